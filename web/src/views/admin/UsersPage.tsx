// Accounts: search by email or name, change a role, disable or enable,
// delete (with their tasks). Locking oneself out answers 409 `self-lockout`.

import { useEffect, useRef, useState } from 'preact/hooks';
import { listUsers } from '../../api/admin';
import type { ProblemError } from '../../api/problem';
import type { User } from '../../api/types';
import { TextField } from '../../components/Field';
import { LoadMore } from '../../components/LoadMore';
import { ProblemAlert } from '../../components/ProblemAlert';
import { toProblem } from '../../hooks';
import { UserItem } from './UserItem';

export function UsersPage() {
  const [searchText, setSearchText] = useState('');
  const [search, setSearch] = useState('');
  const [users, setUsers] = useState<User[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const loadToken = useRef(0);

  useEffect(() => {
    const timer = window.setTimeout(() => setSearch(searchText.trim()), 250);
    return () => window.clearTimeout(timer);
  }, [searchText]);

  const load = (more: boolean) => {
    const token = ++loadToken.current;
    setLoading(true);
    listUsers(search, more ? (cursor ?? undefined) : undefined).then(
      (page) => {
        if (token !== loadToken.current) return;
        setUsers((current) => (more ? [...current, ...page.items] : page.items));
        setCursor(page.next_cursor ?? null);
        setProblem(null);
        setLoading(false);
      },
      (error) => {
        if (token !== loadToken.current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
  };
  useEffect(() => load(false), [search]);

  return (
    <section aria-labelledby="users-heading">
      <h2 id="users-heading">Accounts</h2>
      <form class="filters" role="search" aria-label="Search accounts" onSubmit={(event) => event.preventDefault()}>
        <TextField id="user-search" label="Search email or name" type="search" value={searchText} onValue={setSearchText} />
      </form>
      <ProblemAlert problem={problem} />
      {users.length > 0 ? (
        <ul class="users" aria-label="Accounts">
          {users.map((user) => (
            <UserItem
              key={user.id}
              user={user}
              onChanged={(changed) => setUsers((list) => list.map((known) => (known.id === changed.id ? changed : known)))}
              onDeleted={(id) => setUsers((list) => list.filter((known) => known.id !== id))}
            />
          ))}
        </ul>
      ) : loading ? (
        <p class="loading">Loading…</p>
      ) : (
        <p class="empty">No accounts match.</p>
      )}
      <LoadMore cursor={cursor} loading={loading} onMore={() => load(true)} />
    </section>
  );
}
