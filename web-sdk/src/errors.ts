// What can go wrong when talking to the meeting: one error type whose `code` is the stable
// code an app matches on, mapped exactly as the Rust SDK's `ClientError::code` does, so every
// Onstage client reports the same thing the same way.

import type { CloseReason, ErrorBody, ErrorCode } from "./protocol.js";

/** Which of the SDK's failures it is; `code` is what to match on, this says a little more. */
export type ErrorKind =
  /** The server refused the call; `code` is its code. A refused call changed nothing. */
  | "server"
  /** The server refused the token: missing or bad, or its participant no longer exists. */
  | "unauthorized"
  /** The token's lifetime is over; a new token (invite link) for the participant works. */
  | "token_expired"
  /** The token was superseded by a newer one for the participant; retrying never helps. */
  | "token_revoked"
  /** The server ended this session for good and said why (`reason`). */
  | "ended"
  /** The server could not be reached, or closed the connection before its welcome. */
  | "connect"
  /** Something answered, but not as an Onstage server does. */
  | "not_onstage"
  /** The server address is not one the SDK can use. Nothing was sent. */
  | "bad_server_url"
  /**
   * The connection dropped before the call was answered, or the call was made while
   * reconnecting. Whether a call in flight took effect is unknown; the events tell.
   */
  | "connection_lost"
  /** No reply within the request timeout. */
  | "timeout"
  /** The meeting is over for this handle (left, or reconnecting failed for good). */
  | "closed"
  /** The server sent something this SDK does not understand. */
  | "protocol";

const ENDED_MESSAGES: { [R in CloseReason]: string } = {
  replaced:
    "this participant joined again elsewhere with the same token (another window or device); this session ended",
  revoked:
    "a newer token was issued for this participant; this session ended and this token no longer works",
  removed: "an admin removed this participant from the meeting",
  meeting_deleted: "an admin deleted the meeting",
  meeting_ended: "the host ended the meeting for everyone",
  left: "the meeting was left",
  shutdown: "the server shut down",
  too_slow: "the server dropped this connection for reading too slowly",
  bad_input: "the server closed the connection (bad_input): it kept refusing this client's frames",
};

/** The code of a session the server ended, by its reason (the Rust SDK's mapping). */
function endedCode(reason: CloseReason): ErrorCode {
  switch (reason) {
    case "revoked":
      return "token_revoked";
    // The token no longer works.
    case "removed":
    case "meeting_deleted":
      return "unauthorized";
    case "bad_input":
      return "bad_request";
    default:
      return "connection_lost";
  }
}

export class OnstageError extends Error {
  override readonly name = "OnstageError";
  readonly kind: ErrorKind;
  /** The stable code: the server's for `server`, the SDK's own otherwise. */
  readonly code: ErrorCode;
  /** For `rate_limited`, when the server says when to try again. */
  readonly retry_after_ms?: number;
  /** For `ended`: the server's goodbye. */
  readonly reason?: CloseReason;

  private constructor(
    kind: ErrorKind,
    code: ErrorCode,
    message: string,
    extra: { retry_after_ms?: number; reason?: CloseReason } = {},
  ) {
    super(message);
    this.kind = kind;
    this.code = code;
    if (extra.retry_after_ms !== undefined) this.retry_after_ms = extra.retry_after_ms;
    if (extra.reason !== undefined) this.reason = extra.reason;
  }

  static server(body: ErrorBody): OnstageError {
    const extra = body.retry_after_ms === undefined ? {} : { retry_after_ms: body.retry_after_ms };
    return new OnstageError("server", body.code, body.message, extra);
  }

  static ended(reason: CloseReason): OnstageError {
    return new OnstageError("ended", endedCode(reason), ENDED_MESSAGES[reason], { reason });
  }

  static unauthorized(message: string): OnstageError {
    return new OnstageError("unauthorized", "unauthorized", `unauthorized: ${message}`);
  }

  static tokenExpired(message: string): OnstageError {
    return new OnstageError("token_expired", "token_expired", `token expired: ${message}`);
  }

  static tokenRevoked(message: string): OnstageError {
    return new OnstageError("token_revoked", "token_revoked", `token revoked: ${message}`);
  }

  static connect(message: string): OnstageError {
    return new OnstageError("connect", "unreachable", `cannot connect: ${message}`);
  }

  static notOnstage(message: string): OnstageError {
    return new OnstageError("not_onstage", "not_onstage_server", `not an Onstage server: ${message}`);
  }

  static badServerUrl(message: string): OnstageError {
    return new OnstageError("bad_server_url", "invalid_server_url", `bad server address: ${message}`);
  }

  static connectionLost(): OnstageError {
    return new OnstageError("connection_lost", "connection_lost", "the connection to the server is lost");
  }

  static timeout(ms: number): OnstageError {
    return new OnstageError("timeout", "connection_lost", `no reply from the server within ${ms} ms`);
  }

  static closed(): OnstageError {
    return new OnstageError("closed", "connection_lost", "the meeting is closed");
  }

  static protocol(message: string): OnstageError {
    return new OnstageError("protocol", "internal", `protocol error: ${message}`);
  }

  /**
   * What a call gets once the meeting is over: the server's reason when it ended the
   * session, else `closed`.
   */
  static afterEnd(reason: CloseReason | null): OnstageError {
    return reason !== null && reason !== "left" ? OnstageError.ended(reason) : OnstageError.closed();
  }

  /** The error as it travels: `{"code":..,"message":..}`. */
  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.retry_after_ms !== undefined) body.retry_after_ms = this.retry_after_ms;
    return body;
  }
}
