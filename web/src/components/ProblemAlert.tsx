// A failure as the user reads it: the problem's title and detail. Field
// messages are shown beside their fields; those about no field of the form
// (or when `fields` is not given) are listed here.

import type { ProblemError } from '../api/problem';

export function ProblemAlert({ problem, fields }: { problem: ProblemError | null; fields?: string[] }) {
  if (!problem) return null;
  const stray = problem.fieldMessages.filter((message) => !fields || !fields.includes(message.field));
  return (
    <div class="alert alert-error" role="alert">
      <p class="alert-title">{problem.title}</p>
      {problem.detail ? <p>{problem.detail}</p> : null}
      {stray.length > 0 ? (
        <ul>
          {stray.map((message, index) => (
            <li key={index}>
              {message.field ? <strong>{message.field}: </strong> : null}
              {message.message}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
