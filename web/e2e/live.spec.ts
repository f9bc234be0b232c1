import { expect, test } from '@playwright/test';
import { apiToken, registerThroughApi, signInUi, taskItem, uniqueEmail } from './helpers';

test('a task created by another client appears without a reload', async ({ page, request }) => {
  const email = uniqueEmail('live');
  await registerThroughApi(request, email);
  await signInUi(page, email);
  await expect(page.getByRole('heading', { name: 'Tasks', level: 1 })).toBeVisible();
  await expect(page.getByText('Live: changes made elsewhere appear here.')).toBeVisible();

  const token = await apiToken(request, email);
  const created = await request.post('/tasks', {
    headers: { Authorization: `Bearer ${token}` },
    data: { title: 'Created elsewhere', priority: 'high' },
  });
  expect(created.status(), await created.text()).toBe(201);
  await expect(taskItem(page, 'Created elsewhere')).toBeVisible({ timeout: 15_000 });
  await expect(taskItem(page, 'Created elsewhere')).toContainText('Priority: High');

  // A change and a deletion arrive the same way.
  const task = (await created.json()) as { id: string; version: number };
  const done = await request.patch(`/tasks/${task.id}`, {
    headers: { Authorization: `Bearer ${token}`, 'If-Match': `"${task.version}"` },
    data: { status: 'done' },
  });
  expect(done.ok()).toBeTruthy();
  await expect(taskItem(page, 'Created elsewhere')).toContainText('Done', { timeout: 15_000 });
  const removed = await request.delete(`/tasks/${task.id}`, { headers: { Authorization: `Bearer ${token}` } });
  expect(removed.status()).toBe(204);
  await expect(taskItem(page, 'Created elsewhere')).toHaveCount(0, { timeout: 15_000 });
});
