package dev.faultline.cli;

/** A mistake of the user's (bad argument, missing file, impossible size): printed as one line, exit code 2. */
public final class UserError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public UserError(String message) {
        super(message);
    }
}
