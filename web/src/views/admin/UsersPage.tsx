// Accounts: search by email or name, change a role, disable or enable,
// delete (with their tasks). Locking oneself out answers 409 `self-lockout`.

import { useEffect, useState } from 'preact/hooks';
import { listUsers } from '../../api/admin';
import type { User } from '../../api/types';
import { TextField } from '../../components/Field';
import { LoadMore } from '../../components/LoadMore';
import { ProblemAlert } from '../../components/ProblemAlert';
import { usePages } from '../../hooks';
import { UserItem } from './UserItem';

export function UsersPage() {
  const [searchText, setSearchText] = useState('');
  const [search, setSearch] = useState('');

  useEffect(() => {
    const timer = window.setTimeout(() => setSearch(searchText.trim()), 250);
    return () => window.clearTimeout(timer);
  }, [searchText]);

  const pages = usePages<User>((cursor) => listUsers(search, cursor), [search]);
  const { items: users, setItems: setUsers, cursor, loading, problem } = pages;

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
      <LoadMore cursor={cursor} loading={loading} onMore={pages.loadMore} />
    </section>
  );
}
