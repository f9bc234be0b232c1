// Cursor paging: one more page at the end of a list.

export function LoadMore({ cursor, loading, onMore }: { cursor: string | null | undefined; loading: boolean; onMore(): void }) {
  if (!cursor) return null;
  return (
    <div class="load-more">
      <button type="button" onClick={onMore} disabled={loading}>
        {loading ? 'Loading…' : 'Load more'}
      </button>
    </div>
  );
}
