// The session as the views see it: re-rendered on sign-in, token change and sign-out.

import { useEffect, useState } from 'preact/hooks';
import { onSessionChange, sessionState, type SessionState } from './api/client';

export function useSession(): SessionState {
  const [state, setState] = useState(sessionState);
  useEffect(() => onSessionChange(() => setState(sessionState())), []);
  return state;
}
