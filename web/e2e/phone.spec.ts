import { expect, test } from '@playwright/test';
import { createTaskUi, expectNoHorizontalOverflow, registerThroughApi, signInUi, taskItem, uniqueEmail } from './helpers';

test.use({ viewport: { width: 375, height: 740 } });

test('at 375 px the forms and the list fit the width', async ({ page, request }) => {
  await page.goto('/#/signup');
  await expect(page.getByRole('heading', { name: 'Sign up' })).toBeVisible();
  await expectNoHorizontalOverflow(page);

  const email = uniqueEmail('phone');
  await registerThroughApi(request, email);
  await signInUi(page, email);
  await expect(page.getByRole('heading', { name: 'Tasks', level: 1 })).toBeVisible();
  await createTaskUi(page, 'A task with a rather long title that has to wrap on a narrow phone screen');
  await createTaskUi(page, 'Short one');
  await page.getByRole('button', { name: 'More details' }).click();
  await expectNoHorizontalOverflow(page);

  await taskItem(page, 'Short one').getByRole('button', { name: /^Edit/ }).click();
  await expect(page.getByRole('form', { name: 'Edit “Short one”' })).toBeVisible();
  await expectNoHorizontalOverflow(page);

  await page.getByRole('link', { name: 'Account' }).click();
  await expect(page.getByRole('heading', { name: 'Your account' })).toBeVisible();
  await expectNoHorizontalOverflow(page);
});
