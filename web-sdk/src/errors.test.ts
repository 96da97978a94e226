import { describe, expect, it } from "vitest";

import { OnstageError } from "./errors.js";
import type { CloseReason, ErrorCode } from "./protocol.js";

describe("errors", () => {
  it("ended_sessions_say_why_with_a_code_that_fits", () => {
    const cases: [CloseReason, ErrorCode, string][] = [
      ["replaced", "connection_lost", "elsewhere"],
      ["revoked", "token_revoked", "newer token"],
      ["removed", "unauthorized", "removed"],
      ["meeting_deleted", "unauthorized", "deleted"],
      ["meeting_ended", "connection_lost", "ended the meeting"],
      ["bad_input", "bad_request", "bad_input"],
    ];
    for (const [reason, code, words] of cases) {
      const e = OnstageError.ended(reason);
      expect(e.code, reason).toBe(code);
      expect(e.reason).toBe(reason);
      expect(e.message, reason).toContain(words);
      expect(e).toBeInstanceOf(Error);
    }
  });

  it("the_sdk_own_failures_have_the_rust_sdk_codes", () => {
    expect(OnstageError.timeout(200).code).toBe("connection_lost");
    expect(OnstageError.closed().code).toBe("connection_lost");
    expect(OnstageError.connectionLost().code).toBe("connection_lost");
    expect(OnstageError.protocol("x").code).toBe("internal");
    expect(OnstageError.connect("x").code).toBe("unreachable");
    expect(OnstageError.notOnstage("x").code).toBe("not_onstage_server");
    expect(OnstageError.badServerUrl("x").code).toBe("invalid_server_url");
    expect(OnstageError.afterEnd("left").kind).toBe("closed");
    expect(OnstageError.afterEnd(null).kind).toBe("closed");
    expect(OnstageError.afterEnd("removed").kind).toBe("ended");
  });

  it("a_server_error_keeps_its_code_and_retry_hint", () => {
    const e = OnstageError.server({ code: "rate_limited", message: "later", retry_after_ms: 900 });
    expect([e.kind, e.code, e.retry_after_ms, e.message]).toEqual(["server", "rate_limited", 900, "later"]);
    expect(e.toBody()).toEqual({ code: "rate_limited", message: "later", retry_after_ms: 900 });
    expect(OnstageError.timeout(5).toBody()).toEqual({
      code: "connection_lost",
      message: "no reply from the server within 5 ms",
    });
  });
});
