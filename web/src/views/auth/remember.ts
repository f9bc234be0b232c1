/** The email last typed on an auth page: the next one starts with it. */
export const lastEmail = { value: '' };
