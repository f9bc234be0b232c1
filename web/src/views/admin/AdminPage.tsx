import { DeadLettersPage } from './DeadLettersPage';
import { HealthPage } from './HealthPage';
import { PluginsPage } from './PluginsPage';
import { UsersPage } from './UsersPage';

const SECTIONS = [
  { path: '/admin/plugins', label: 'Plugins' },
  { path: '/admin/dead-letters', label: 'Dead letters' },
  { path: '/admin/users', label: 'Accounts' },
  { path: '/admin/health', label: 'Health' },
];

export function AdminPage({ path }: { path: string }) {
  return (
    <section class="console">
      <h1>Operator console</h1>
      <nav aria-label="Console">
        <ul class="tabs">
          {SECTIONS.map((section) => (
            <li key={section.path}>
              <a href={`#${section.path}`} aria-current={path === section.path ? 'page' : undefined}>
                {section.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <Section path={path} />
    </section>
  );
}

function Section({ path }: { path: string }) {
  switch (path) {
    case '/admin/dead-letters':
      return <DeadLettersPage />;
    case '/admin/users':
      return <UsersPage />;
    case '/admin/health':
      return <HealthPage />;
    default:
      return <PluginsPage />;
  }
}
