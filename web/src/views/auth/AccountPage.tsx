// The caller's account: display name, password (a change answers a new
// session, which replaces this one), and a way to the password reset.

import { useEffect, useState } from 'preact/hooks';
import { changePassword, getMe, updateMe } from '../../api/account';
import type { User } from '../../api/types';
import { TextField } from '../../components/Field';
import { ProblemAlert } from '../../components/ProblemAlert';
import { formatInstant } from '../../format';
import { useAction, useLoad } from '../../hooks';
import { announce } from '../../status';

export function AccountPage() {
  const me = useLoad(getMe, []);
  return (
    <section class="narrow">
      <h1>Your account</h1>
      <ProblemAlert problem={me.problem} />
      {me.data ? (
        <>
          <dl class="facts">
            <dt>Email</dt>
            <dd>{me.data.email}</dd>
            <dt>Role</dt>
            <dd>{me.data.role}</dd>
            <dt>Member since</dt>
            <dd>{formatInstant(me.data.created_at)}</dd>
          </dl>
          <DisplayNameForm user={me.data} />
          {me.data.external ? (
            <p class="card">Your account signs in at your organisation's identity provider: its password is managed there.</p>
          ) : (
            <PasswordForm />
          )}
        </>
      ) : me.loading ? (
        <p class="loading">Loading…</p>
      ) : null}
      <p>
        Forgot your current password? <a href="#/forgot-password">Reset it by email</a>.
      </p>
    </section>
  );
}

function DisplayNameForm({ user }: { user: User }) {
  const [name, setName] = useState(user.display_name ?? '');
  useEffect(() => setName(user.display_name ?? ''), [user.display_name]);
  const action = useAction();
  const submit = async (event: Event) => {
    event.preventDefault();
    const saved = await action.run(() => updateMe(name.trim() || null));
    if (saved) {
      setName(saved.display_name ?? '');
      announce('Display name saved.', 'success');
    }
  };
  return (
    <form class="card" onSubmit={submit} noValidate aria-labelledby="profile-heading">
      <h2 id="profile-heading">Profile</h2>
      <ProblemAlert problem={action.problem} fields={['display_name']} />
      <TextField id="display-name" label="Display name" autoComplete="nickname" maxLength={100} value={name} onValue={setName}
        error={action.problem?.fieldMessage('display_name')} hint="Leave empty to show no name." />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.pending}>
          Save name
        </button>
      </div>
    </form>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const action = useAction();
  const submit = async (event: Event) => {
    event.preventDefault();
    const done = await action.run(async () => {
      await changePassword(current, next);
      return true;
    });
    if (done) {
      setCurrent('');
      setNext('');
      announce('Password changed. Your other sessions were signed out.', 'success');
    }
  };
  return (
    <form class="card" onSubmit={submit} noValidate aria-labelledby="password-heading">
      <h2 id="password-heading">Change password</h2>
      <ProblemAlert problem={action.problem} fields={['current_password', 'new_password']} />
      <TextField id="current-password" label="Current password" type="password" autoComplete="current-password" required
        value={current} onValue={setCurrent} error={action.problem?.fieldMessage('current_password')} />
      <TextField id="new-password" label="New password" type="password" autoComplete="new-password" required value={next}
        onValue={setNext} error={action.problem?.fieldMessage('new_password')}
        hint="10–128 characters, with a letter and a digit, not containing your email." />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.pending}>
          Change password
        </button>
      </div>
    </form>
  );
}
