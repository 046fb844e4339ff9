import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, post, setCsrf } from './lib/api.js';
import { Login } from './pages/Login.jsx';
import { Fleet } from './pages/Fleet.jsx';
import { Node } from './pages/Node.jsx';
import { Policies } from './pages/Policies.jsx';
import { Alerts } from './pages/Alerts.jsx';
import { Flows } from './pages/Flows.jsx';
import { Audit } from './pages/Audit.jsx';
import './style.css';

const PAGES = [
  ['fleet', 'Fleet'],
  ['policies', 'Policies'],
  ['alerts', 'Alerts'],
  ['flows', 'Flows'],
  ['audit', 'Audit log'],
];

function route() {
  const [page, ...rest] = window.location.hash.replace(/^#\/?/, '').split('/');
  return { page: page || 'fleet', arg: rest.map(decodeURIComponent).join('/') };
}

function Page({ page, arg, user }) {
  switch (page) {
    case 'node':
      return <Node id={arg} />;
    case 'policies':
      return <Policies user={user} />;
    case 'alerts':
      return <Alerts user={user} />;
    case 'flows':
      return <Flows />;
    case 'audit':
      return <Audit />;
    default:
      return <Fleet />;
  }
}

function App() {
  const [user, setUser] = useState(undefined);
  const [where, setWhere] = useState(route());
  useEffect(() => {
    const onHash = () => setWhere(route());
    window.addEventListener('hashchange', onHash);
    get('session').then(
      (s) => {
        setCsrf(s.csrf);
        setUser(s);
      },
      () => setUser(null),
    );
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const loggedIn = (s) => {
    setCsrf(s.csrf);
    setUser(s);
  };
  const logout = async () => {
    await post('logout').catch(() => {});
    setCsrf(null);
    setUser(null);
  };
  return (
    <>
      <header>
        <span class="brand">Ringfence</span>
        {user && (
          <nav>
            {PAGES.map(([id, label]) => (
              <a href={`#/${id}`} class={where.page === id ? 'active' : ''} data-testid={`nav-${id}`}>
                {label}
              </a>
            ))}
          </nav>
        )}
        {user && (
          <span class="who" data-testid="who">
            {user.name} ({user.role}) <button onClick={logout}>Log out</button>
          </span>
        )}
      </header>
      <main>
        {user === undefined && <p class="muted">Loading…</p>}
        {user === null && <Login onLogin={loggedIn} />}
        {user && <Page page={where.page} arg={where.arg} user={user} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));
