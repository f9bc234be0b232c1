// The shell: the header with the navigation, the live status region, and
// the page the hash names. Pages that need a session show the sign-in form
// instead (and go on to the page once signed in).

import { useEffect, useRef } from 'preact/hooks';
import type { SessionState } from './api/client';
import { Header } from './components/Header';
import { StatusRegion } from './components/StatusRegion';
import { navigate, splitPath, useHashPath } from './router';
import { useSession } from './session';
import { AccountPage } from './views/auth/AccountPage';
import { ForgotPassword } from './views/auth/ForgotPassword';
import { SignIn } from './views/auth/SignIn';
import { SignUp } from './views/auth/SignUp';
import { AdminPage } from './views/admin/AdminPage';
import { TasksPage } from './views/tasks/TasksPage';

const PUBLIC_PAGES = ['/login', '/signup', '/forgot-password'];

export function App() {
  const session = useSession();
  const hashPath = useHashPath();
  const { path, params } = splitPath(hashPath);

  useEffect(() => {
    if (path === '/' || path === '') navigate(session.status === 'signed-out' ? '/login' : '/tasks', { replace: true });
    else if (session.status === 'signed-in' && (path === '/login' || path === '/signup')) navigate('/tasks', { replace: true });
  }, [path, session.status]);

  // A new page is announced by its title and takes the focus (but the first:
  // a fresh load starts at the top, as any page does).
  const shownBefore = useRef(false);
  useEffect(() => {
    document.title = `${titleOf(path)} · todo-host`;
    if (shownBefore.current) document.getElementById('main')?.focus();
    shownBefore.current = true;
  }, [path]);

  return (
    <>
      <a class="skip-link" href="#main" onClick={(event) => skipToMain(event)}>
        Skip to content
      </a>
      <Header session={session} path={path} />
      <StatusRegion />
      <main id="main" tabIndex={-1}>
        <Page session={session} path={path} params={params} />
      </main>
    </>
  );
}

function skipToMain(event: Event) {
  // The hash is the router's: move the focus without navigating.
  event.preventDefault();
  document.getElementById('main')?.focus();
}

function Page({ session, path, params }: { session: SessionState; path: string; params: URLSearchParams }) {
  if (path === '/signup') return <SignUp />;
  if (path === '/forgot-password') return <ForgotPassword token={params.get('token') ?? ''} />;
  if (session.status === 'restoring') return <p class="loading">Restoring your session…</p>;
  if (session.status === 'signed-out') {
    const next = PUBLIC_PAGES.includes(path) || path === '/' ? '/tasks' : path;
    return <SignIn next={next} />;
  }
  if (path === '/tasks') return <TasksPage claims={session.claims} />;
  if (path === '/account') return <AccountPage />;
  if (path.startsWith('/admin')) {
    if (session.claims.role !== 'admin') return <NotFound text="The operator console is for administrators." />;
    return <AdminPage path={path} />;
  }
  if (path === '/login' || path === '/' || path === '') return null;
  return <NotFound text="There is no page here." />;
}

function NotFound({ text }: { text: string }) {
  return (
    <section>
      <h1>Not found</h1>
      <p>{text}</p>
      <p>
        <a href="#/tasks">Go to your tasks</a>
      </p>
    </section>
  );
}

function titleOf(path: string): string {
  if (path.startsWith('/admin')) return 'Operator console';
  return (
    { '/tasks': 'Tasks', '/account': 'Account', '/login': 'Sign in', '/signup': 'Sign up', '/forgot-password': 'Reset password' }[
      path
    ] ?? 'todo-host'
  );
}
