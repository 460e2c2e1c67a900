import { URLExt } from '@jupyterlab/coreutils';

import { ServerConnection } from '@jupyterlab/services';

/** The containers API's namespace under the server's base URL. */
export const API_PATH = 'exec-sessions/v1';

/** An error answer of the containers API (OpenAI shape), or a network failure. */
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly type: string | null = null
  ) {
    super(message);
  }
}

/** The full URL of an API path. */
export function apiURL(
  endPoint: string,
  serverSettings: ServerConnection.ISettings
): string {
  return URLExt.join(serverSettings.baseUrl, API_PATH, endPoint);
}

/**
 * Call the server extension's containers API.
 *
 * @param endPoint path under the API, e.g. `containers?limit=100`
 * @param serverSettings the server settings to use for the request
 * @param init initial values for the request
 * @returns the response body interpreted as JSON
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const response = await rawRequest(endPoint, serverSettings, init);
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    const err = data && data.error ? data.error : null;
    throw new APIError(
      err?.message ?? (typeof data === 'string' && data ? data : response.statusText),
      response.status,
      err?.type ?? null
    );
  }
  return data as T;
}

/** A request whose response the caller reads itself (streams, downloads). */
export async function rawRequest(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<Response> {
  try {
    return await ServerConnection.makeRequest(
      apiURL(endPoint, serverSettings),
      init,
      serverSettings
    );
  } catch (error) {
    throw new APIError(
      `The server cannot be reached (${(error as Error).message ?? error}).`,
      0,
      'network_error'
    );
  }
}
