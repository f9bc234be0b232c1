import { useState } from 'preact/hooks';
import { replayDeadLetter } from '../../api/admin';
import type { DeadLetter, ReplayResult } from '../../api/types';
import { ProblemAlert } from '../../components/ProblemAlert';
import { VisuallyHidden } from '../../components/VisuallyHidden';
import { formatInstant } from '../../format';
import { useAction } from '../../hooks';
import { announce } from '../../status';

const OUTCOME_TEXT: Record<ReplayResult['outcome'], string> = {
  handled: 'handled — the handler took the event now',
  'already-handled': 'already-handled — the handler had taken it before; nothing was done again',
  failed: 'failed — the handler refused it again',
};

export function DeadLetterItem({ letter }: { letter: DeadLetter }) {
  const [result, setResult] = useState<ReplayResult | null>(null);
  const action = useAction();
  const label = letter.event_type ?? 'malformed event';

  const replay = async () => {
    const answer = await action.run(() => replayDeadLetter(letter.id));
    if (answer) {
      setResult(answer);
      announce(`Replay of ${label} for ${letter.handler}: ${answer.outcome}.`, answer.outcome === 'failed' ? 'error' : 'success');
    }
  };

  const status = result && result.outcome !== 'failed' ? 'replayed' : letter.status;
  return (
    <li class="card dead-letter">
      <div class="task-head">
        <h3>
          {letter.handler}: {label}
        </h3>
        <span class={`badge badge-dl-${status}`}>{status}</span>
      </div>
      <dl class="facts">
        <dt>Subject</dt>
        <dd>{letter.subject ?? '—'}</dd>
        <dt>Error ({letter.error_kind})</dt>
        <dd class="break">{letter.error}</dd>
        <dt>Attempts</dt>
        <dd>{letter.attempts}</dd>
        <dt>Dead-lettered</dt>
        <dd>{formatInstant(letter.dead_lettered_at)}</dd>
        <dt>Origin</dt>
        <dd class="break">
          {letter.original.topic} / partition {letter.original.partition} / offset {letter.original.offset}
        </dd>
        {letter.replayed_at ? (
          <>
            <dt>Replayed</dt>
            <dd>
              {formatInstant(letter.replayed_at)}: {letter.replay_outcome}
            </dd>
          </>
        ) : null}
        {letter.last_replay_error ? (
          <>
            <dt>Last replay error</dt>
            <dd class="break">{letter.last_replay_error}</dd>
          </>
        ) : null}
      </dl>
      {letter.event ? (
        <details>
          <summary>Event</summary>
          <pre>{JSON.stringify(letter.event, null, 2)}</pre>
        </details>
      ) : null}
      <ProblemAlert problem={action.problem} />
      {result ? (
        <p class={`outcome outcome-${result.outcome}`}>
          Replay outcome: <strong>{OUTCOME_TEXT[result.outcome]}</strong>
          {result.error ? <span class="break"> ({result.error})</span> : null}
        </p>
      ) : null}
      <div class="actions">
        <button type="button" onClick={replay} disabled={action.pending}>
          {action.pending ? 'Replaying…' : 'Replay'}
          <VisuallyHidden>
            {' '}
            {label} for {letter.handler}
          </VisuallyHidden>
        </button>
      </div>
    </li>
  );
}
