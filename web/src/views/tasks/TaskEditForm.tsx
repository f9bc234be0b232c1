// Editing one task. The form keeps the version it was opened at and sends it
// as If-Match: a change made elsewhere in between answers 412
// `version-mismatch`, and the form says so and offers the latest version.

import { useEffect, useRef, useState } from 'preact/hooks';
import { isProblem, localProblem } from '../../api/problem';
import { getTask, updateTask } from '../../api/tasks';
import type { Task, TaskChanges } from '../../api/types';
import { ProblemAlert } from '../../components/ProblemAlert';
import { fromLocalInput, toLocalInput } from '../../format';
import { useAction } from '../../hooks';
import { announce } from '../../status';
import { TASK_FIELDS, TaskFields, type TaskDraft } from './TaskFields';

function draftOf(task: Task): TaskDraft {
  return {
    title: task.title,
    description: task.description ?? '',
    status: task.status,
    priority: task.priority,
    due: toLocalInput(task.due_at),
  };
}

function changesOf(base: Task, draft: TaskDraft): TaskChanges {
  const changes: TaskChanges = {};
  if (draft.title.trim() !== base.title) changes.title = draft.title.trim();
  const description = draft.description.trim() || null;
  if (description !== (base.description ?? null)) changes.description = description;
  if (draft.status !== base.status) changes.status = draft.status;
  if (draft.priority !== base.priority) changes.priority = draft.priority;
  if (draft.due !== toLocalInput(base.due_at)) changes.due_at = fromLocalInput(draft.due);
  return changes;
}

interface Props {
  task: Task;
  onSaved(task: Task): void;
  /** The latest version was loaded after a conflict (the form stays open). */
  onRefreshed(task: Task): void;
  onCancel(): void;
}

export function TaskEditForm({ task, onSaved, onRefreshed, onCancel }: Props) {
  // The task as it was when the form opened (or was last refreshed).
  const [base, setBase] = useState(task);
  const [draft, setDraft] = useState(() => draftOf(task));
  const action = useAction();
  const conflictRef = useRef<HTMLDivElement>(null);
  const formRef = useRef<HTMLFormElement>(null);
  const conflict = isProblem(action.problem, 'version-mismatch');
  const prefix = `edit-${task.id}`;

  useEffect(() => formRef.current?.querySelector<HTMLInputElement>('input')?.focus(), []);
  useEffect(() => {
    if (conflict) conflictRef.current?.focus();
  }, [conflict]);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!draft.title.trim()) {
      action.setProblem(localProblem('title', 'Give the task a title.'));
      return;
    }
    const changes = changesOf(base, draft);
    if (Object.keys(changes).length === 0) return onCancel();
    const saved = await action.run(() => updateTask(base.id, base.version, changes));
    if (saved) {
      announce(`Task “${saved.title}” saved.`, 'success');
      onSaved(saved);
    }
  };

  const loadLatest = async () => {
    const latest = await action.run(() => getTask(base.id));
    if (latest) {
      setBase(latest);
      setDraft(draftOf(latest));
      onRefreshed(latest);
      announce('Loaded the latest version of the task. Make your changes again.');
    }
  };

  return (
    <form class="edit-task" ref={formRef} onSubmit={submit} noValidate aria-label={`Edit “${base.title}”`}>
      {conflict ? (
        <div class="alert alert-error" role="alert" tabIndex={-1} ref={conflictRef}>
          <p class="alert-title">This task was changed somewhere else</p>
          <p>
            Someone (or another tab) changed it after you opened it, so your changes were not saved. Load the latest
            version and make your changes again.
          </p>
          <button type="button" onClick={loadLatest}>
            Load latest version
          </button>
        </div>
      ) : (
        <ProblemAlert problem={action.problem} fields={TASK_FIELDS} />
      )}
      <TaskFields prefix={prefix} draft={draft} onDraft={setDraft} problem={action.problem} />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.pending}>
          {action.pending ? 'Saving…' : 'Save'}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
