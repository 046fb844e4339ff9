import { useState } from 'preact/hooks';
import { post } from '../lib/api.js';

export function Login({ onLogin }) {
  const [useToken, setUseToken] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const body = useToken
      ? { token: f.get('token') }
      : { username: f.get('username'), password: f.get('password') };
    try {
      onLogin(await post('login', body));
    } catch (err) {
      setError(err.message);
    }
  };
  return (
    <form class="login" onSubmit={submit} data-testid="login">
      <h1>Log in</h1>
      {useToken ? (
        <label>
          Admin credential <input name="token" type="password" autocomplete="off" required />
        </label>
      ) : (
        <>
          <label>
            Account <input name="username" autocomplete="username" required />
          </label>
          <label>
            Password <input name="password" type="password" autocomplete="current-password" required />
          </label>
        </>
      )}
      <button type="submit">Log in</button>
      <button type="button" class="link" onClick={() => setUseToken(!useToken)}>
        {useToken ? 'Use an account' : 'Use the admin credential'}
      </button>
      {error && <p class="error" role="alert">{error}</p>}
    </form>
  );
}
