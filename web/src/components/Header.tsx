import type { SessionState } from '../api/client';
import { signOut } from '../api/client';
import { navigate } from '../router';
import { announce } from '../status';

export function Header({ session, path }: { session: SessionState; path: string }) {
  const signedIn = session.status === 'signed-in';
  const isAdmin = signedIn && session.claims.role === 'admin';
  const link = (href: string, label: string, active: boolean) => (
    <li>
      <a href={`#${href}`} aria-current={active ? 'page' : undefined}>
        {label}
      </a>
    </li>
  );
  return (
    <header class="site-header">
      <a class="brand" href="#/tasks">
        todo-host
      </a>
      {signedIn ? (
        <nav aria-label="Main">
          <ul>
            {link('/tasks', 'Tasks', path === '/tasks')}
            {link('/account', 'Account', path === '/account')}
            {isAdmin ? link('/admin/plugins', 'Console', path.startsWith('/admin')) : null}
            <li>
              <button
                type="button"
                class="link-button"
                onClick={async () => {
                  await signOut();
                  announce('You are signed out.');
                  navigate('/login', { replace: true });
                }}
              >
                Sign out
              </button>
            </li>
          </ul>
        </nav>
      ) : null}
    </header>
  );
}
