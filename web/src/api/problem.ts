// RFC 9457 problem details, as every failure of the API answers them, turned
// into one error type the views can show: `detail` for the form, and the
// field messages of `errors[]` next to their fields.

/** One broken rule. The host sends `{pointer, detail}` (a JSON pointer into
 * the body); `{field, message}` is accepted too. */
interface RawFieldError {
  pointer?: string;
  detail?: string;
  field?: string;
  message?: string;
}

export interface FieldMessage {
  /** The body member it is about (`title`, `new_password`), or '' for the whole body. */
  field: string;
  message: string;
}

export class ProblemError extends Error {
  constructor(
    /** The HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    /** The last segment of `type`: `version-mismatch`, `validation-failed`, … */
    readonly slug: string,
    readonly title: string,
    readonly detail: string | null,
    readonly fieldMessages: FieldMessage[],
  ) {
    super(detail ?? title);
    this.name = 'ProblemError';
  }

  /** The messages about one body member, joined (undefined when there are none). */
  fieldMessage(field: string): string | undefined {
    const messages = this.fieldMessages.filter((error) => error.field === field).map((error) => error.message);
    return messages.length > 0 ? messages.join('; ') : undefined;
  }
}

function fieldOf(error: RawFieldError): string {
  if (error.field !== undefined) return error.field;
  // `/new_password` → `new_password`; `/items/0/title` → `items`.
  return (error.pointer ?? '').split('/')[1] ?? '';
}

/** The failure a non-2xx response describes. Not every one is problem+json (a
 * proxy's error page, say): those keep their status line. */
export async function problemFromResponse(response: Response): Promise<ProblemError> {
  let body: Record<string, unknown> = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status line is all there is.
  }
  const text = (value: unknown) => (typeof value === 'string' ? value : null);
  const rawErrors = Array.isArray(body.errors) ? (body.errors as RawFieldError[]) : [];
  return new ProblemError(
    response.status,
    (text(body.type) ?? '').split('/').pop() ?? '',
    text(body.title) ?? (response.statusText || `HTTP ${response.status}`),
    text(body.detail),
    rawErrors.map((error) => ({ field: fieldOf(error), message: error.detail ?? error.message ?? '' })),
  );
}

/** What a failed `fetch` (no answer at all) becomes. */
export function unreachable(): ProblemError {
  return new ProblemError(0, 'unreachable', 'Cannot reach the server', 'Check your connection and try again.', []);
}

export function isProblem(error: unknown, slug: string): error is ProblemError {
  return error instanceof ProblemError && error.slug === slug;
}

/** A local check that failed before anything was sent, shaped like the server's. */
export function localProblem(field: string, message: string): ProblemError {
  return new ProblemError(0, 'validation-failed', 'Check the form', null, [{ field, message }]);
}
