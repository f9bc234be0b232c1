import { useRef, useState } from 'preact/hooks';
import { localProblem } from '../../api/problem';
import { createTask } from '../../api/tasks';
import type { Task } from '../../api/types';
import { ProblemAlert } from '../../components/ProblemAlert';
import { fromLocalInput } from '../../format';
import { useAction } from '../../hooks';
import { announce } from '../../status';
import { TASK_FIELDS, TaskFields, type TaskDraft } from './TaskFields';

const EMPTY: TaskDraft = { title: '', description: '', status: 'todo', priority: 'medium', due: '' };

export function TaskCreateForm({ onCreated }: { onCreated(task: Task): void }) {
  const [draft, setDraft] = useState(EMPTY);
  const [more, setMore] = useState(false);
  const action = useAction();
  const formRef = useRef<HTMLFormElement>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!draft.title.trim()) {
      action.setProblem(localProblem('title', 'Give the task a title.'));
      return;
    }
    const task = await action.run(() =>
      createTask({
        title: draft.title.trim(),
        description: draft.description.trim() || null,
        status: draft.status,
        priority: draft.priority,
        due_at: fromLocalInput(draft.due),
      }),
    );
    if (task) {
      onCreated(task);
      announce(`Task “${task.title}” created.`, 'success');
      setDraft(EMPTY);
      formRef.current?.querySelector<HTMLInputElement>('input')?.focus();
    }
  };

  return (
    <form class="card create-task" ref={formRef} onSubmit={submit} noValidate aria-labelledby="create-heading">
      <h2 id="create-heading">New task</h2>
      <ProblemAlert problem={action.problem} fields={TASK_FIELDS} />
      <TaskFields prefix="new" draft={draft} onDraft={setDraft} problem={action.problem} titleOnly={!more} />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.pending}>
          {action.pending ? 'Adding…' : 'Add task'}
        </button>
        <button type="button" aria-expanded={more} aria-controls="create-heading" onClick={() => setMore(!more)}>
          {more ? 'Fewer details' : 'More details'}
        </button>
      </div>
    </form>
  );
}
