// The polite live region every view announces its status lines through.

import { useEffect, useState } from 'preact/hooks';
import { clearStatus, currentStatus, onStatus } from '../status';

export function StatusRegion() {
  const [status, setStatus] = useState(currentStatus);
  useEffect(() => onStatus(() => setStatus(currentStatus())), []);
  return (
    <div class="status-region" role="status" aria-live="polite" aria-atomic="true">
      {status ? (
        <p class={`status status-${status.kind}`} key={status.id}>
          <span>{status.text}</span>
          <button type="button" class="link-button" onClick={clearStatus}>
            Dismiss
          </button>
        </p>
      ) : null}
    </div>
  );
}
