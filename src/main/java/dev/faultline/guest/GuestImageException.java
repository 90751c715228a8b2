package dev.faultline.guest;

/** A guest image the boot protocol refuses; the message is one line naming the values concerned. */
public final class GuestImageException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public GuestImageException(String message) {
        super(message);
    }

    public GuestImageException(String message, Throwable cause) {
        super(message, cause);
    }
}
