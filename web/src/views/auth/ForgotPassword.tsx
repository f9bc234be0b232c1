// The password reset: ask for a link (the same answer whether or not the
// account exists), then set a new password with the token it carries.

import { useState } from 'preact/hooks';
import { confirmPasswordReset, requestPasswordReset } from '../../api/account';
import { TextField } from '../../components/Field';
import { ProblemAlert } from '../../components/ProblemAlert';
import { useAction } from '../../hooks';
import { navigate, setFlash } from '../../router';
import { lastEmail } from './remember';

export function ForgotPassword({ token: initialToken }: { token: string }) {
  return (
    <section class="narrow">
      <h1>Reset your password</h1>
      {initialToken ? null : <RequestReset />}
      <ConfirmReset initialToken={initialToken} />
      <p>
        <a href="#/login">Back to sign in</a>
      </p>
    </section>
  );
}

function RequestReset() {
  const [email, setEmail] = useState(lastEmail.value);
  const [answer, setAnswer] = useState<string | null>(null);
  const action = useAction();
  const submit = async (event: Event) => {
    event.preventDefault();
    lastEmail.value = email;
    const detail = await action.run(() => requestPasswordReset(email.trim()));
    if (detail) setAnswer(detail);
  };
  return (
    <form onSubmit={submit} noValidate aria-labelledby="request-reset-heading">
      <h2 id="request-reset-heading">1. Request a reset link</h2>
      <ProblemAlert problem={action.problem} fields={['email']} />
      {answer ? (
        <p class="alert alert-success" role="status">
          {answer}
        </p>
      ) : null}
      <TextField id="reset-email" label="Email" type="email" autoComplete="username" required value={email}
        onValue={setEmail} error={action.problem?.fieldMessage('email')} />
      <div class="actions">
        <button type="submit" disabled={action.pending}>
          Send reset link
        </button>
      </div>
    </form>
  );
}

function ConfirmReset({ initialToken }: { initialToken: string }) {
  const [token, setToken] = useState(initialToken);
  const [password, setPassword] = useState('');
  const action = useAction();
  const submit = async (event: Event) => {
    event.preventDefault();
    const done = await action.run(async () => {
      await confirmPasswordReset(token.trim(), password);
      return true;
    });
    if (done) {
      setFlash('Your password was changed. Sign in with the new one.');
      navigate('/login', { replace: true });
    }
  };
  return (
    <form onSubmit={submit} noValidate aria-labelledby="confirm-reset-heading">
      <h2 id="confirm-reset-heading">2. Set a new password</h2>
      <ProblemAlert problem={action.problem} fields={['token', 'new_password']} />
      <TextField id="reset-token" label="Reset token (from the email)" required value={token} onValue={setToken}
        autoComplete="one-time-code" error={action.problem?.fieldMessage('token')} />
      <TextField id="reset-password" label="New password" type="password" autoComplete="new-password" required
        value={password} onValue={setPassword} error={action.problem?.fieldMessage('new_password')}
        hint="10–128 characters, with a letter and a digit." />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.pending}>
          Set new password
        </button>
      </div>
    </form>
  );
}
