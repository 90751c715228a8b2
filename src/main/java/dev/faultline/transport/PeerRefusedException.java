package dev.faultline.transport;

import java.io.IOException;

/**
 * A peer that did not pass a {@link Transport}'s checks (TLS handshake, certificate, allow-list), or
 * whose connection failed before it did. The message is one line: "peer 10.0.0.2:41234 refused:
 * identity 'mallory' is not in --tls-allow (source)". The connection is closed when this is thrown.
 */
public final class PeerRefusedException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String peer;
    private final String reason;

    public PeerRefusedException(String peer, String reason, Throwable cause) {
        super("peer " + peer + " refused: " + reason, cause);
        this.peer = peer;
        this.reason = reason;
    }

    /** The peer's address, "10.0.0.2:41234". */
    public String peer() { return peer; }

    /** Why it was refused, without the address: "no certificate". */
    public String reason() { return reason; }
}
