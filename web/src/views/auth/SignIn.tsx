import { useEffect, useRef, useState } from 'preact/hooks';
import { signIn } from '../../api/client';
import { TextField } from '../../components/Field';
import { ProblemAlert } from '../../components/ProblemAlert';
import { useAction } from '../../hooks';
import { navigate, takeFlash } from '../../router';
import { lastEmail } from './remember';

export function SignIn({ next }: { next: string }) {
  const [email, setEmail] = useState(lastEmail.value);
  const [password, setPassword] = useState('');
  const [flash] = useState(takeFlash);
  const action = useAction();
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);

  const submit = async (event: Event) => {
    event.preventDefault();
    lastEmail.value = email;
    const done = await action.run(async () => {
      await signIn(email.trim(), password);
      return true;
    });
    if (done) navigate(next, { replace: true });
  };

  return (
    <section class="narrow">
      <h1 tabIndex={-1} ref={heading}>
        Sign in
      </h1>
      {flash ? (
        <p class="alert alert-success" role="status">
          {flash}
        </p>
      ) : null}
      <form onSubmit={submit} noValidate>
        <ProblemAlert problem={action.problem} fields={['email', 'password']} />
        <TextField id="email" label="Email" type="email" autoComplete="username" required value={email} onValue={setEmail}
          error={action.problem?.fieldMessage('email')} />
        <TextField id="password" label="Password" type="password" autoComplete="current-password" required value={password}
          onValue={setPassword} error={action.problem?.fieldMessage('password')} />
        <div class="actions">
          <button type="submit" class="primary" disabled={action.pending}>
            {action.pending ? 'Signing in…' : 'Sign in'}
          </button>
        </div>
      </form>
      <p>
        <a href="#/forgot-password">Forgot your password?</a>
      </p>
      <p>
        No account yet? <a href="#/signup">Sign up</a>
      </p>
    </section>
  );
}
