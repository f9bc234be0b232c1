import { render } from 'preact';
import { restoreSession } from './api/client';
import { App } from './App';
import './styles.css';

void restoreSession();
render(<App />, document.getElementById('app')!);
