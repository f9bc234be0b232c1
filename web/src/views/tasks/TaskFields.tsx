// The fields of a task, shared by the create and the edit form.

import { SelectField, TextAreaField, TextField } from '../../components/Field';
import type { ProblemError } from '../../api/problem';
import type { Priority, TaskStatus } from '../../api/types';

export interface TaskDraft {
  title: string;
  description: string;
  status: TaskStatus;
  priority: Priority;
  /** A `datetime-local` value. */
  due: string;
}

export const TASK_FIELDS = ['title', 'description', 'status', 'priority', 'due_at'];

const STATUS = [
  { value: 'todo', label: 'To do' },
  { value: 'in_progress', label: 'In progress' },
  { value: 'done', label: 'Done' },
];
const PRIORITY = [
  { value: 'low', label: 'Low' },
  { value: 'medium', label: 'Medium' },
  { value: 'high', label: 'High' },
];

interface Props {
  prefix: string;
  draft: TaskDraft;
  onDraft(draft: TaskDraft): void;
  problem: ProblemError | null;
  /** The create form shows the title only until asked for more. */
  titleOnly?: boolean;
}

export function TaskFields({ prefix, draft, onDraft, problem, titleOnly }: Props) {
  const set = <K extends keyof TaskDraft>(key: K) => (value: string) => onDraft({ ...draft, [key]: value as TaskDraft[K] });
  const error = (field: string) => problem?.fieldMessage(field);
  return (
    <>
      <TextField id={`${prefix}-title`} label="Title" required maxLength={200} value={draft.title} onValue={set('title')}
        error={error('title')} />
      {titleOnly ? null : (
        <>
          <TextAreaField id={`${prefix}-description`} label="Description" maxLength={10000} value={draft.description}
            onValue={set('description')} error={error('description')} />
          <div class="field-row">
            <SelectField id={`${prefix}-status`} label="Status" value={draft.status} onValue={set('status')} options={STATUS}
              error={error('status')} />
            <SelectField id={`${prefix}-priority`} label="Priority" value={draft.priority} onValue={set('priority')}
              options={PRIORITY} error={error('priority')} />
            <TextField id={`${prefix}-due`} label="Due" type="datetime-local" value={draft.due} onValue={set('due')}
              error={error('due_at')} />
          </div>
        </>
      )}
    </>
  );
}
