// A parser of the `text/event-stream` format (the HTML standard's rules),
// for streams read with `fetch`: EventSource cannot send an Authorization
// header.

export interface ServerSentEvent {
  /** `event:`, or `message` when the event named none. */
  type: string;
  data: string;
  /** The stream's last `id:` up to this event: what `Last-Event-ID` resumes from. */
  lastEventId: string | undefined;
}

export interface EventStreamParser {
  /** Feeds decoded text, chunk by chunk, in order; complete events go to `onEvent`. */
  push(chunk: string): void;
  /** Drops a half-received event (the connection ended in its middle): the
   * next connection starts afresh, resuming after the last complete event. */
  discard(): void;
}

export function eventStreamParser(onEvent: (event: ServerSentEvent) => void): EventStreamParser {
  let pending = '';
  let type = '';
  let data: string[] = [];
  let idBuffer: string | undefined;
  let dispatchedId: string | undefined;

  const dispatch = () => {
    dispatchedId = idBuffer;
    // An event with neither data nor a name carries nothing (`id:` alone
    // only moves the resume point).
    if (data.length > 0 || type !== '') onEvent({ type: type || 'message', data: data.join('\n'), lastEventId: idBuffer });
    type = '';
    data = [];
  };

  const line = (text: string) => {
    if (text === '') return dispatch();
    // Comments: the server's keep-alives.
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) idBuffer = value;
    // `retry:` and unknown fields are ignored: reconnection has its own backoff.
  };

  return {
    push(chunk) {
      pending += chunk;
      // Lines end in CRLF, LF or CR. A CR at the very end may be the first
      // half of a CRLF: it waits for the next chunk.
      const complete = pending.endsWith('\r') ? pending.length - 1 : pending.length;
      const lines = pending.slice(0, complete).split(/\r\n|\n|\r/);
      pending = (lines.pop() ?? '') + pending.slice(complete);
      lines.forEach(line);
    },
    discard() {
      pending = '';
      type = '';
      data = [];
      idBuffer = dispatchedId;
    },
  };
}
