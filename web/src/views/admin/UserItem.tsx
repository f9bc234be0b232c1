import { useEffect, useState } from 'preact/hooks';
import { deleteUser, updateUser, type UserChanges } from '../../api/admin';
import { isProblem } from '../../api/problem';
import type { Role, User } from '../../api/types';
import { ConfirmButton } from '../../components/ConfirmButton';
import { SelectField } from '../../components/Field';
import { ProblemAlert } from '../../components/ProblemAlert';
import { VisuallyHidden } from '../../components/VisuallyHidden';
import { formatInstant } from '../../format';
import { useAction } from '../../hooks';
import { announce } from '../../status';

const ROLES = [
  { value: 'admin', label: 'Admin' },
  { value: 'user', label: 'User' },
  { value: 'viewer', label: 'Viewer' },
];

interface Props {
  user: User;
  onChanged(user: User): void;
  onDeleted(id: string): void;
}

export function UserItem({ user, onChanged, onDeleted }: Props) {
  const [role, setRole] = useState<Role>(user.role);
  useEffect(() => setRole(user.role), [user.role]);
  const action = useAction();
  const fieldId = `role-${user.id}`;

  const change = async (changes: UserChanges, done: string) => {
    const saved = await action.run(() => updateUser(user.id, changes));
    if (saved) {
      onChanged(saved);
      announce(done, 'success');
    }
  };

  const remove = async () => {
    const done = await action.run(async () => {
      await deleteUser(user.id);
      return true;
    });
    if (done) {
      onDeleted(user.id);
      announce(`Account ${user.email} deleted.`, 'success');
    }
  };

  const lockout = isProblem(action.problem, 'self-lockout');
  return (
    <li class={`card user ${user.disabled ? 'user-disabled' : ''}`}>
      <div class="task-head">
        <h3 class="break">{user.email}</h3>
        {user.disabled ? <span class="badge badge-disabled">disabled</span> : null}
        {user.external ? <span class="badge">external</span> : null}
      </div>
      <p class="task-meta">
        <span>{user.display_name ?? 'No display name'}</span>
        <span>Since {formatInstant(user.created_at)}</span>
      </p>
      {lockout ? (
        <div class="alert alert-error" role="alert">
          <p class="alert-title">You cannot lock yourself out</p>
          <p>{action.problem?.detail ?? 'An administrator cannot demote, disable or delete their own account.'}</p>
        </div>
      ) : (
        <ProblemAlert problem={action.problem} />
      )}
      <form
        class="inline-form"
        onSubmit={(event) => {
          event.preventDefault();
          void change({ role }, `${user.email} is now ${role}.`);
        }}
      >
        <SelectField id={fieldId} label={`Role of ${user.email}`} value={role} options={ROLES}
          onValue={(value) => setRole(value as Role)} />
        <button type="submit" disabled={action.pending || role === user.role}>
          Save role<VisuallyHidden> of {user.email}</VisuallyHidden>
        </button>
      </form>
      <div class="actions">
        <button
          type="button"
          disabled={action.pending}
          onClick={() =>
            change({ disabled: !user.disabled }, `${user.email} is ${user.disabled ? 'enabled' : 'disabled'}.`)
          }
        >
          {user.disabled ? 'Enable' : 'Disable'}
          <VisuallyHidden> {user.email}</VisuallyHidden>
        </button>
        <ConfirmButton
          danger
          label={
            <>
              Delete<VisuallyHidden> {user.email}</VisuallyHidden>
            </>
          }
          question={`Delete ${user.email} and all their tasks?`}
          confirmLabel="Yes, delete account"
          onConfirm={remove}
          disabled={action.pending}
        />
      </div>
    </li>
  );
}
