// Labelled form controls: the label, the control, a hint, and the server's
// message about this field beside it (tied with aria-describedby).

import type { ComponentChildren } from 'preact';

interface Common {
  id: string;
  label: string;
  error?: string;
  hint?: string;
  required?: boolean;
}

function describedBy({ id, error, hint }: Common): string | undefined {
  const ids = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean);
  return ids.length > 0 ? ids.join(' ') : undefined;
}

function Shell(props: Common & { children: ComponentChildren }) {
  return (
    <div class={props.error ? 'field field-invalid' : 'field'}>
      <span class="label-line">
        <label for={props.id}>{props.label}</label>
        {props.required ? (
          <span class="required" aria-hidden="true">
            {' '}
            *
          </span>
        ) : null}
      </span>
      {props.children}
      {props.hint ? (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      ) : null}
      {props.error ? (
        <p class="field-error" id={`${props.id}-error`}>
          {props.error}
        </p>
      ) : null}
    </div>
  );
}

export interface TextFieldProps extends Common {
  value: string;
  onValue(value: string): void;
  type?: 'text' | 'email' | 'password' | 'search' | 'datetime-local';
  autoComplete?: string;
  maxLength?: number;
  minLength?: number;
}

export function TextField(props: TextFieldProps) {
  return (
    <Shell {...props}>
      <input
        id={props.id}
        name={props.id}
        type={props.type ?? 'text'}
        value={props.value}
        required={props.required}
        autoComplete={props.autoComplete}
        maxLength={props.maxLength}
        minLength={props.minLength}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(props)}
        onInput={(event) => props.onValue(event.currentTarget.value)}
      />
    </Shell>
  );
}

export function TextAreaField(props: Common & { value: string; onValue(value: string): void; maxLength?: number }) {
  return (
    <Shell {...props}>
      <textarea
        id={props.id}
        name={props.id}
        value={props.value}
        rows={3}
        maxLength={props.maxLength}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(props)}
        onInput={(event) => props.onValue(event.currentTarget.value)}
      />
    </Shell>
  );
}

export interface Option {
  value: string;
  label: string;
}

export function SelectField(props: Common & { value: string; onValue(value: string): void; options: Option[] }) {
  return (
    <Shell {...props}>
      <select
        id={props.id}
        name={props.id}
        value={props.value}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(props)}
        onChange={(event) => props.onValue(event.currentTarget.value)}
      >
        {props.options.map((option) => (
          <option key={option.value} value={option.value}>
            {option.label}
          </option>
        ))}
      </select>
    </Shell>
  );
}
