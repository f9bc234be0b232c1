// The plugins in service: state, version, digest and call statistics, with
// Reload (re-read the plugin directory) and Rollback (to the previous version).

import { useState } from 'preact/hooks';
import { listPlugins, reloadPlugins, rollbackPlugin } from '../../api/admin';
import type { PluginOverview, ReloadReport } from '../../api/types';
import { ConfirmButton } from '../../components/ConfirmButton';
import { ProblemAlert } from '../../components/ProblemAlert';
import { VisuallyHidden } from '../../components/VisuallyHidden';
import { formatInstant, formatMs } from '../../format';
import { useAction, useLoad } from '../../hooks';
import { announce } from '../../status';
import { ReloadReportView } from './ReloadReportView';

export function PluginsPage() {
  const plugins = useLoad(listPlugins, []);
  const [report, setReport] = useState<ReloadReport | null>(null);
  const action = useAction();

  const reload = async () => {
    const answer = await action.run(reloadPlugins);
    if (answer) {
      setReport(answer);
      announce(`Reload done: ${answer.loaded.length} loaded, ${answer.failed.length} failed.`, answer.failed.length ? 'error' : 'success');
      plugins.reload();
    }
  };

  const rollback = async (name: string) => {
    const identity = await action.run(() => rollbackPlugin(name));
    if (identity) {
      announce(`${identity.name} rolled back to version ${identity.version}.`, 'success');
      plugins.reload();
    }
  };

  return (
    <section aria-labelledby="plugins-heading">
      <div class="page-head">
        <h2 id="plugins-heading">Plugins</h2>
        <div class="actions">
          <button type="button" class="primary" onClick={reload} disabled={action.pending}>
            {action.pending ? 'Working…' : 'Reload plugins'}
          </button>
          <button type="button" onClick={plugins.reload}>
            Refresh
          </button>
        </div>
      </div>
      <ProblemAlert problem={action.problem ?? plugins.problem} />
      {report ? <ReloadReportView report={report} onClose={() => setReport(null)} /> : null}
      {plugins.data ? (
        <div class="table-wrap">
          <table class="plugins">
            <caption class="visually-hidden">Plugins in service</caption>
            <thead>
              <tr>
                <th scope="col">Plugin</th>
                <th scope="col">State</th>
                <th scope="col">Version</th>
                <th scope="col">SHA-256</th>
                <th scope="col">Calls</th>
                <th scope="col">Errors</th>
                <th scope="col">Traps</th>
                <th scope="col">p50</th>
                <th scope="col">p99</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {plugins.data.map((plugin) => (
                <PluginRow key={plugin.name} plugin={plugin} busy={action.pending} onRollback={rollback} />
              ))}
            </tbody>
          </table>
        </div>
      ) : plugins.loading ? (
        <p class="loading">Loading…</p>
      ) : null}
    </section>
  );
}

function PluginRow({ plugin, busy, onRollback }: { plugin: PluginOverview; busy: boolean; onRollback(name: string): void }) {
  const previous = plugin.previous[0];
  return (
    <tr>
      <th scope="row">
        {plugin.name}
        <span class="muted"> ({plugin.kind})</span>
      </th>
      <td>
        <span class={`badge badge-state-${plugin.state}`}>{plugin.state}</span>
        {plugin.last_failure ? <p class="field-error">{plugin.last_failure}</p> : null}
      </td>
      <td>
        {plugin.version}
        <span class="muted small"> since {formatInstant(plugin.loaded_at)}</span>
      </td>
      <td>
        <code title={plugin.sha256}>{plugin.sha256.slice(0, 12)}…</code>
      </td>
      <td class="num">{plugin.calls.toLocaleString()}</td>
      <td class="num">{plugin.errors.toLocaleString()}</td>
      <td class="num">{plugin.traps.toLocaleString()}</td>
      <td class="num">{formatMs(plugin.p50_ms)}</td>
      <td class="num">{formatMs(plugin.p99_ms)}</td>
      <td>
        {previous ? (
          <ConfirmButton
            label={
              <>
                Rollback<VisuallyHidden> {plugin.name}</VisuallyHidden>
              </>
            }
            question={`Roll ${plugin.name} back to ${previous.version}?`}
            confirmLabel="Yes, roll back"
            onConfirm={() => onRollback(plugin.name)}
            disabled={busy}
          />
        ) : (
          <span class="muted small">No earlier version</span>
        )}
      </td>
    </tr>
  );
}
