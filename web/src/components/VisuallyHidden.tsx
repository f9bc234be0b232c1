import type { ComponentChildren } from 'preact';

/** Text for screen readers only (a button's object: "Edit <the task>"). */
export function VisuallyHidden({ children }: { children: ComponentChildren }) {
  return <span class="visually-hidden">{children}</span>;
}
