// A destructive action asked twice, inline (no window.confirm): the first
// press shows the question with Confirm and Cancel; Cancel (or Escape) puts
// the focus back on the button that asked.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

interface Props {
  /** The button's text ("Delete"). */
  label: ComponentChildren;
  /** The question ("Delete “Buy milk”?"). */
  question: string;
  confirmLabel: string;
  onConfirm(): void;
  disabled?: boolean;
  danger?: boolean;
}

export function ConfirmButton(props: Props) {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  const askRef = useRef<HTMLButtonElement>(null);
  const answered = useRef(false);
  useEffect(() => {
    if (asking) confirmRef.current?.focus();
    else if (answered.current) askRef.current?.focus();
  }, [asking]);
  const cancel = () => {
    answered.current = true;
    setAsking(false);
  };
  if (!asking) {
    return (
      <button type="button" ref={askRef} class={props.danger ? 'danger' : ''} disabled={props.disabled} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  }
  return (
    <span class="confirm" role="group" aria-label={props.question} onKeyDown={(event) => event.key === 'Escape' && cancel()}>
      <span class="confirm-question">{props.question}</span>
      <button
        type="button"
        ref={confirmRef}
        class={props.danger ? 'danger' : 'primary'}
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        {props.confirmLabel}
      </button>
      <button type="button" onClick={cancel}>
        Cancel
      </button>
    </span>
  );
}
