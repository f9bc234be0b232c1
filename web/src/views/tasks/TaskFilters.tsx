import { SelectField, TextField } from '../../components/Field';
import type { FilterForm } from './filters';
import { NO_FILTERS } from './filters';

const STATUS_OPTIONS = [
  { value: '', label: 'Any status' },
  { value: 'todo', label: 'To do' },
  { value: 'in_progress', label: 'In progress' },
  { value: 'done', label: 'Done' },
];
const PRIORITY_OPTIONS = [
  { value: '', label: 'Any priority' },
  { value: 'low', label: 'Low' },
  { value: 'medium', label: 'Medium' },
  { value: 'high', label: 'High' },
];
const SORT_OPTIONS = [
  { value: 'created_at', label: 'Created' },
  { value: 'due_at', label: 'Due' },
  { value: 'priority', label: 'Priority' },
];
const ORDER_OPTIONS = [
  { value: 'desc', label: 'Descending' },
  { value: 'asc', label: 'Ascending' },
];

export function TaskFilters({ value, onChange }: { value: FilterForm; onChange(value: FilterForm): void }) {
  const set = <K extends keyof FilterForm>(key: K) => (next: string) => onChange({ ...value, [key]: next as FilterForm[K] });
  const filtered = JSON.stringify(value) !== JSON.stringify(NO_FILTERS);
  return (
    <form class="filters" role="search" aria-label="Filter tasks" onSubmit={(event) => event.preventDefault()}>
      <TextField id="filter-q" label="Search titles" type="search" value={value.q} onValue={set('q')} maxLength={200} />
      <SelectField id="filter-status" label="Status" value={value.status} onValue={set('status')} options={STATUS_OPTIONS} />
      <SelectField id="filter-priority" label="Priority" value={value.priority} onValue={set('priority')} options={PRIORITY_OPTIONS} />
      <TextField id="filter-due-after" label="Due after" type="datetime-local" value={value.dueAfter} onValue={set('dueAfter')} />
      <TextField id="filter-due-before" label="Due before" type="datetime-local" value={value.dueBefore} onValue={set('dueBefore')} />
      <SelectField id="filter-sort" label="Sort by" value={value.sort} onValue={set('sort')} options={SORT_OPTIONS} />
      <SelectField id="filter-order" label="Order" value={value.order} onValue={set('order')} options={ORDER_OPTIONS} />
      {filtered ? (
        <div class="actions">
          <button type="button" onClick={() => onChange(NO_FILTERS)}>
            Clear filters
          </button>
        </div>
      ) : null}
    </form>
  );
}
