package dev.faultline.transport;

import java.io.IOException;

/** Credentials that cannot be used: the message is one line naming the file and the reason, never the file's contents. */
public final class CredentialsException extends IOException {
    private static final long serialVersionUID = 1L;

    public CredentialsException(String message) {
        super(message);
    }
}
