package dev.faultline.migration;

/**
 * A peer sent something this side cannot accept (wrong magic or version, a CRC mismatch, a truncated
 * frame, a sequence gap, a page outside RAM, a message out of order) or went silent. The message
 * names the peer and the message; nothing from the offending message has been installed.
 */
public final class ProtocolException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ProtocolException(String message) {
        super(message);
    }

    public ProtocolException(String message, Throwable cause) {
        super(message, cause);
    }
}
