import { expect, test } from '@playwright/test';
import { apiToken, createTaskUi, PASSWORD, screenshotPath, taskItem, taskList, uniqueEmail } from './helpers';

test('sign up, sign in, create, filter, edit, conflict, delete, sign out', async ({ page, request }) => {
  const email = uniqueEmail('flow');
  // The host's CSP forbids inline scripts and styles: the browser reports any.
  const violations: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) violations.push(message.text());
  });

  // Sign up.
  await page.goto('/#/signup');
  await expect(page.getByRole('heading', { name: 'Sign up' })).toBeVisible();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Display name (optional)').fill('Flow Tester');
  await page.getByLabel('Password', { exact: true }).fill('short');
  await page.getByRole('button', { name: 'Create account' }).click();
  // The server's field message shows beside the field.
  await expect(page.getByLabel('Password', { exact: true })).toHaveAttribute('aria-invalid', 'true');
  await expect(page.locator('#password-error')).toContainText('at least');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();

  // Sign in.
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByRole('status').filter({ hasText: 'Account created' })).toBeVisible();
  await expect(page.getByLabel('Email')).toHaveValue(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Tasks', level: 1 })).toBeVisible();
  // Not an admin: no console.
  await expect(page.getByRole('link', { name: 'Console' })).toHaveCount(0);

  // Three tasks.
  for (const title of ['Buy milk', 'Write the report', 'Call the plumber']) await createTaskUi(page, title);
  await expect(taskList(page).getByRole('listitem')).toHaveCount(3);
  await taskItem(page, 'Write the report').getByRole('button', { name: /^Mark done/ }).click();
  await expect(taskItem(page, 'Write the report')).toContainText('Done');
  const shot = screenshotPath('task-app.png');
  if (shot) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: shot, fullPage: true });
  }

  // Filters.
  await page.getByLabel('Status', { exact: true }).selectOption({ label: 'Done' });
  await expect(taskList(page).getByRole('listitem')).toHaveCount(1);
  await expect(taskItem(page, 'Write the report')).toBeVisible();
  await page.getByLabel('Status', { exact: true }).selectOption({ label: 'Any status' });
  await expect(taskList(page).getByRole('listitem')).toHaveCount(3);
  await page.getByLabel('Search titles').fill('milk');
  await expect(taskList(page).getByRole('listitem')).toHaveCount(1);
  await expect(taskItem(page, 'Buy milk')).toBeVisible();
  await page.getByRole('button', { name: 'Clear filters' }).click();
  await expect(taskList(page).getByRole('listitem')).toHaveCount(3);
  await page.getByLabel('Sort by').selectOption({ label: 'Created' });
  await page.getByLabel('Order').selectOption({ label: 'Ascending' });
  await expect(taskList(page).getByRole('heading').first()).toHaveText('Buy milk');
  await page.getByLabel('Order').selectOption({ label: 'Descending' });
  await expect(taskList(page).getByRole('heading').first()).toHaveText('Call the plumber');

  // Edit.
  await taskItem(page, 'Call the plumber').getByRole('button', { name: /^Edit/ }).click();
  const editPlumber = page.getByRole('form', { name: 'Edit “Call the plumber”' });
  await editPlumber.getByLabel('Title').fill('Call the plumber today');
  await editPlumber.getByLabel('Priority').selectOption({ label: 'High' });
  await editPlumber.getByRole('button', { name: 'Save' }).click();
  await expect(taskItem(page, 'Call the plumber today')).toContainText('Priority: High');

  // A stale edit: the task changes elsewhere while the form is open.
  await taskItem(page, 'Buy milk').getByRole('button', { name: /^Edit/ }).click();
  const editMilk = page.getByRole('form', { name: 'Edit “Buy milk”' });
  await expect(editMilk).toBeVisible();
  const token = await apiToken(request, email);
  const headers = { Authorization: `Bearer ${token}` };
  const found = await request.get('/tasks?q=Buy%20milk', { headers });
  const task = ((await found.json()) as { items: { id: string; version: number }[] }).items[0]!;
  const changed = await request.patch(`/tasks/${task.id}`, {
    headers: { ...headers, 'If-Match': `"${task.version}"` },
    data: { description: 'Changed by another client' },
  });
  expect(changed.ok(), await changed.text()).toBeTruthy();
  await editMilk.getByLabel('Title').fill('Buy oat milk');
  await editMilk.getByRole('button', { name: 'Save' }).click();
  const conflict = editMilk.getByRole('alert');
  await expect(conflict).toContainText('This task was changed somewhere else');
  await expect(conflict).toContainText('your changes were not saved');
  // Take the latest version and save again.
  await conflict.getByRole('button', { name: 'Load latest version' }).click();
  await expect(editMilk.getByLabel('Description')).toHaveValue('Changed by another client');
  await editMilk.getByLabel('Title').fill('Buy oat milk');
  await editMilk.getByRole('button', { name: 'Save' }).click();
  await expect(taskItem(page, 'Buy oat milk')).toContainText('Changed by another client');

  // Delete.
  await taskItem(page, 'Call the plumber today').getByRole('button', { name: /^Delete/ }).click();
  await page.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(taskItem(page, 'Call the plumber today')).toHaveCount(0);
  await expect(taskList(page).getByRole('listitem')).toHaveCount(2);

  // Sign out.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  expect(violations).toEqual([]);
});
