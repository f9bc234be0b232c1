import { getHealth } from '../../api/admin';
import { ProblemAlert } from '../../components/ProblemAlert';
import { formatInstant, formatMs } from '../../format';
import { useLoad } from '../../hooks';

export function HealthPage() {
  const health = useLoad(getHealth, []);
  const report = health.data;
  return (
    <section aria-labelledby="health-heading">
      <div class="page-head">
        <h2 id="health-heading">Readiness</h2>
        <button type="button" onClick={health.reload}>
          Refresh
        </button>
      </div>
      <ProblemAlert problem={health.problem} />
      {report ? (
        <>
          <p>
            <span class={`badge badge-health-${report.status}`}>{report.status}</span> version {report.version}, role{' '}
            {report.role}
          </p>
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Dependency checks</caption>
              <thead>
                <tr>
                  <th scope="col">Dependency</th>
                  <th scope="col">Status</th>
                  <th scope="col">Latency</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(report.checks).map(([name, check]) => (
                  <tr key={name}>
                    <th scope="row">{name}</th>
                    <td>
                      <span class={`badge badge-health-${check.status}`}>{check.status}</span>
                    </td>
                    <td class="num">{formatMs(check.latency_ms)}</td>
                    <td>{check.detail ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h3>Plugins loaded</h3>
          <ul>
            {report.plugins.map((plugin) => (
              <li key={plugin.name}>
                {plugin.name} {plugin.version}, since {formatInstant(plugin.loaded_at)}
              </li>
            ))}
          </ul>
        </>
      ) : health.loading ? (
        <p class="loading">Loading…</p>
      ) : null}
    </section>
  );
}
