import type { ReloadReport } from '../../api/types';

export function ReloadReportView({ report, onClose }: { report: ReloadReport; onClose(): void }) {
  const nothing =
    report.loaded.length + report.removed.length + report.failed.length + (report.not_in_service?.length ?? 0) === 0;
  return (
    <section class={`card report ${report.failed.length ? 'report-failed' : ''}`} aria-labelledby="report-heading">
      <h3 id="report-heading">Reload report</h3>
      {nothing ? <p>Nothing changed: every plugin is the same as the one serving.</p> : null}
      {report.loaded.length ? (
        <>
          <h4>Loaded</h4>
          <ul>
            {report.loaded.map((plugin) => (
              <li key={plugin.name}>
                {plugin.name} {plugin.version} <code>{plugin.sha256.slice(0, 12)}…</code>
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {report.failed.length ? (
        <>
          <h4>Failed (the previous version keeps serving)</h4>
          <ul>
            {report.failed.map((failure) => (
              <li key={failure.name}>
                <strong>{failure.name}</strong>: {failure.reason}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {report.removed.length ? <p>Removed: {report.removed.join(', ')}</p> : null}
      {report.not_in_service?.length ? <p>Installed but not in service: {report.not_in_service.join(', ')}</p> : null}
      {report.unchanged.length ? <p class="muted">Unchanged: {report.unchanged.join(', ')}</p> : null}
      <button type="button" onClick={onClose}>
        Close report
      </button>
    </section>
  );
}
