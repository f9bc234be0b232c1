import { useEffect, useRef, useState } from 'preact/hooks';
import { register } from '../../api/account';
import { TextField } from '../../components/Field';
import { ProblemAlert } from '../../components/ProblemAlert';
import { useAction } from '../../hooks';
import { navigate, setFlash } from '../../router';
import { lastEmail } from './remember';

export function SignUp() {
  const [email, setEmail] = useState(lastEmail.value);
  const [displayName, setDisplayName] = useState('');
  const [password, setPassword] = useState('');
  const action = useAction();
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);

  const submit = async (event: Event) => {
    event.preventDefault();
    const user = await action.run(() =>
      register({ email: email.trim(), password, display_name: displayName.trim() || null }),
    );
    if (user) {
      lastEmail.value = user.email;
      setFlash(`Account created for ${user.email}. Sign in to continue.`);
      navigate('/login', { replace: true });
    }
  };

  const error = (field: string) => action.problem?.fieldMessage(field);
  return (
    <section class="narrow">
      <h1 tabIndex={-1} ref={heading}>
        Sign up
      </h1>
      <form onSubmit={submit} noValidate>
        <ProblemAlert problem={action.problem} fields={['email', 'password', 'display_name']} />
        <TextField id="email" label="Email" type="email" autoComplete="email" required value={email} onValue={setEmail}
          error={error('email')} />
        <TextField id="display-name" label="Display name (optional)" autoComplete="nickname" maxLength={100}
          value={displayName} onValue={setDisplayName} error={error('display_name')} />
        <TextField id="password" label="Password" type="password" autoComplete="new-password" required value={password}
          onValue={setPassword} error={error('password')}
          hint="10–128 characters, with a letter and a digit, not containing your email." />
        <div class="actions">
          <button type="submit" class="primary" disabled={action.pending}>
            {action.pending ? 'Creating…' : 'Create account'}
          </button>
        </div>
      </form>
      <p>
        Already have an account? <a href="#/login">Sign in</a>
      </p>
    </section>
  );
}
