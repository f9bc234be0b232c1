import { expect, test, type Page } from '@playwright/test';
import { screenshotPath, signInUi } from './helpers';

const admin = { email: process.env.ADMIN_EMAIL ?? '', password: process.env.ADMIN_PASSWORD ?? '' };

async function signInAsAdmin(page: Page) {
  test.skip(!admin.email || !admin.password, 'ADMIN_EMAIL and ADMIN_PASSWORD are not set');
  await signInUi(page, admin.email, admin.password);
  await expect(page.getByRole('heading', { name: 'Tasks', level: 1 })).toBeVisible();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Console' }).click();
  await expect(page.getByRole('heading', { name: 'Operator console' })).toBeVisible();
}

function consoleTab(page: Page, name: string) {
  return page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name });
}

test('plugins: reload shows the new version', async ({ page }) => {
  const plugin = process.env.E2E_RELOAD_PLUGIN;
  const version = process.env.E2E_RELOAD_VERSION;
  await signInAsAdmin(page);
  await expect(page.getByRole('heading', { name: 'Plugins' })).toBeVisible();
  const table = page.getByRole('table', { name: 'Plugins in service' });
  await expect(table.getByRole('rowheader').first()).toBeVisible();
  test.skip(!plugin || !version, 'E2E_RELOAD_PLUGIN and E2E_RELOAD_VERSION are not set');
  const row = table.getByRole('row').filter({ has: page.getByRole('rowheader', { name: new RegExp(`^${plugin} `) }) });
  await expect(row).toBeVisible();
  await page.getByRole('button', { name: 'Reload plugins' }).click();
  const report = page.getByRole('region', { name: 'Reload report' });
  await expect(report).toContainText(`${plugin} ${version}`);
  await expect(row.getByRole('cell').nth(1)).toContainText(version!);
  await expect(page.getByRole('status').filter({ hasText: 'Reload done' })).toBeVisible();
  const shot = screenshotPath('console.png');
  if (shot) await page.screenshot({ path: shot });
});

test('dead letters: replay the pending one, then it is already handled', async ({ page }) => {
  const handler = process.env.E2E_DEAD_LETTER_HANDLER;
  await signInAsAdmin(page);
  await consoleTab(page, 'Dead letters').click();
  await expect(page.getByRole('heading', { name: 'Dead letters' })).toBeVisible();
  test.skip(!handler, 'E2E_DEAD_LETTER_HANDLER is not set');
  await page.getByLabel('Handler').selectOption(handler!);
  await page.getByLabel('Status').selectOption({ label: 'Pending' });
  const letters = page.getByRole('list', { name: 'Dead letters' }).getByRole('listitem');
  await expect(letters).toHaveCount(1);
  await letters.first().getByRole('button', { name: /^Replay/ }).click();
  await expect(letters.first()).toContainText('Replay outcome: handled —');
  // It left the pending ones.
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect(page.getByText('No pending dead letters.')).toBeVisible();
  // Replaying it again: already handled.
  await page.getByLabel('Status').selectOption({ label: 'Replayed' });
  await expect(letters.first()).toBeVisible();
  await expect(letters.first()).toContainText('handled');
  await letters.first().getByRole('button', { name: /^Replay/ }).click();
  await expect(letters.first()).toContainText('Replay outcome: already-handled');
});

test('accounts and health', async ({ page }) => {
  await signInAsAdmin(page);
  await consoleTab(page, 'Health').click();
  await expect(page.getByRole('heading', { name: 'Readiness' })).toBeVisible();
  await expect(page.getByRole('table', { name: 'Dependency checks' }).getByRole('rowheader', { name: 'postgres', exact: true })).toBeVisible();
  await consoleTab(page, 'Accounts').click();
  await page.getByLabel('Search email or name').fill(admin.email);
  const accounts = page.getByRole('list', { name: 'Accounts' }).getByRole('listitem');
  await expect(accounts).toHaveCount(1);
  // Demoting oneself is refused with a clear message.
  await accounts.first().getByLabel(`Role of ${admin.email}`).selectOption('user');
  await accounts.first().getByRole('button', { name: /^Save role/ }).click();
  await expect(accounts.first().getByRole('alert')).toContainText('You cannot lock yourself out');
});
