package dev.faultline.paging;

/** A page source could not provide a page: the message names the source, the address and the cause. */
public final class PageSourceException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public PageSourceException(String message) {
        super(message);
    }

    public PageSourceException(String message, Throwable cause) {
        super(message, cause);
    }
}
