import { useEffect, useState } from 'preact/hooks';
import { isProblem } from '../../api/problem';
import { deleteTask, updateTask } from '../../api/tasks';
import type { Task } from '../../api/types';
import { ConfirmButton } from '../../components/ConfirmButton';
import { ProblemAlert } from '../../components/ProblemAlert';
import { VisuallyHidden } from '../../components/VisuallyHidden';
import { formatInstant, PRIORITY_LABELS, STATUS_LABELS } from '../../format';
import { useAction } from '../../hooks';
import { announce } from '../../status';
import { TaskEditForm } from './TaskEditForm';

interface Props {
  task: Task;
  canWrite: boolean;
  onChanged(task: Task): void;
  onDeleted(id: string): void;
  /** A write found the task changed elsewhere: the list reloads. */
  onStale(): void;
}

export function TaskItem({ task, canWrite, onChanged, onDeleted, onStale }: Props) {
  const [editing, setEditing] = useState(false);
  const action = useAction();

  const staleMessage = 'This task was changed somewhere else in the meantime; the list now shows its latest version. Try again.';
  useEffect(() => {
    if (isProblem(action.problem, 'version-mismatch')) onStale();
  }, [action.problem]);

  const markDone = async () => {
    const saved = await action.run(() => updateTask(task.id, task.version, { status: 'done' }));
    if (saved) {
      onChanged(saved);
      announce(`Task “${saved.title}” marked done.`, 'success');
    }
  };

  const remove = async () => {
    const done = await action.run(async () => {
      await deleteTask(task.id, task.version);
      return true;
    });
    if (done) {
      onDeleted(task.id);
      announce(`Task “${task.title}” deleted.`, 'success');
    }
  };

  if (editing) {
    return (
      <li class="task card">
        <TaskEditForm
          task={task}
          onSaved={(saved) => {
            onChanged(saved);
            setEditing(false);
          }}
          onRefreshed={onChanged}
          onCancel={() => setEditing(false)}
        />
      </li>
    );
  }

  return (
    <li class={`task card task-${task.status}`}>
      <div class="task-head">
        <h3 class="task-title">{task.title}</h3>
        <span class={`badge badge-${task.status}`}>{STATUS_LABELS[task.status]}</span>
      </div>
      <p class="task-meta">
        <span>Priority: {PRIORITY_LABELS[task.priority]}</span>
        <span>Due: {formatInstant(task.due_at)}</span>
        <span>Version {task.version}</span>
      </p>
      {task.description ? <p class="task-description">{task.description}</p> : null}
      {isProblem(action.problem, 'version-mismatch') ? (
        <p class="alert alert-error" role="alert">
          {staleMessage}
        </p>
      ) : (
        <ProblemAlert problem={action.problem} />
      )}
      {canWrite ? (
        <div class="actions">
          {task.status !== 'done' ? (
            <button type="button" onClick={markDone} disabled={action.pending}>
              Mark done<VisuallyHidden>: {task.title}</VisuallyHidden>
            </button>
          ) : null}
          <button type="button" onClick={() => setEditing(true)} disabled={action.pending}>
            Edit<VisuallyHidden>: {task.title}</VisuallyHidden>
          </button>
          <ConfirmButton
            danger
            label={
              <>
                Delete<VisuallyHidden>: {task.title}</VisuallyHidden>
              </>
            }
            question={`Delete “${task.title}”?`}
            confirmLabel="Yes, delete"
            onConfirm={remove}
            disabled={action.pending}
          />
        </div>
      ) : null}
    </li>
  );
}
