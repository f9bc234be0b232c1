import { expect, type APIRequestContext, type Locator, type Page } from '@playwright/test';

export const PASSWORD = 'e2e-Passw0rd-2026';

export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

/** Registers an account through the API (for the specs that are not about signing up). */
export async function registerThroughApi(request: APIRequestContext, email: string, password = PASSWORD): Promise<void> {
  const response = await request.post('/auth/register', { data: { email, password } });
  expect(response.status(), await response.text()).toBe(201);
}

/** Another client of the same user: its own session, through the API. */
export async function apiToken(request: APIRequestContext, email: string, password = PASSWORD): Promise<string> {
  const response = await request.post('/auth/login', { data: { email, password } });
  expect(response.ok(), await response.text()).toBeTruthy();
  return ((await response.json()) as { access_token: string }).access_token;
}

export async function signInUi(page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.goto('/#/login');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function createTaskUi(page: Page, title: string): Promise<void> {
  const form = page.getByRole('form', { name: 'New task' });
  await form.getByLabel('Title').fill(title);
  await form.getByRole('button', { name: 'Add task' }).click();
  await expect(taskItem(page, title)).toBeVisible();
}

export function taskList(page: Page): Locator {
  return page.getByRole('list', { name: 'Tasks' });
}

/** The list item of the task titled `title` (shown, not being edited). */
export function taskItem(page: Page, title: string): Locator {
  return taskList(page)
    .getByRole('listitem')
    .filter({ has: page.getByRole('heading', { name: title, exact: true }) });
}

/** No horizontal scrolling of the page. */
export async function expectNoHorizontalOverflow(page: Page): Promise<void> {
  const { scrollWidth, clientWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
  }));
  expect(scrollWidth, 'page wider than the viewport').toBeLessThanOrEqual(clientWidth);
}

export function screenshotPath(name: string): string | undefined {
  const dir = process.env.SCREENSHOT_DIR;
  return dir ? `${dir.replace(/\/$/, '')}/${name}` : undefined;
}
