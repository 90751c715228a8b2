package dev.faultline.migration;

/**
 * The migration wire format, version {@link #VERSION}. Every message is one frame: a fixed 24-byte
 * header, then {@code length} payload bytes. All integers are big-endian.
 *
 * <pre>
 *  0               4       5       6               8
 * +---------------+-------+-------+---------------+
 * | magic "FLMG"  |version| type  |   reserved 0  |
 * +---------------+-------+-------+---------------+
 * |                 seq (u64)                     |   8
 * +-----------------------+-----------------------+
 * |   payload length (u32)|  CRC32C (u32)         |  16..24
 * +-----------------------+-----------------------+
 * |  payload ...                                  |
 * </pre>
 *
 * The CRC32C covers header bytes 0..19 and the whole payload, so a flipped bit anywhere, a wrong
 * length or a wrong sequence number is caught before the payload is looked at. {@code seq} starts at
 * 1 on every connection and direction and grows by exactly one per frame: a gap or a repeat is a
 * protocol error (and, for a later resume, says exactly where a broken stream stopped).
 */
public final class Protocol {
    private Protocol() {}

    public static final int MAGIC = 0x464C4D47; // "FLMG"
    public static final int VERSION = 1;
    public static final int HEADER_BYTES = 24;
    public static final int OFF_MAGIC = 0, OFF_VERSION = 4, OFF_TYPE = 5, OFF_RESERVED = 6, OFF_SEQ = 8, OFF_LENGTH = 16, OFF_CRC = 20;
    /** Bytes of the header the CRC covers (everything before the CRC field). */
    public static final int CRC_COVERED_HEADER = OFF_CRC;

    public static final int PAGE = 4096;
    /** Most pages one PAGES message carries (one bit each in its zero mask). */
    public static final int MAX_PAGES_PER_MESSAGE = 64;
    /** Largest payload accepted: a full PAGES message, or a RESULT report. */
    public static final int MAX_PAYLOAD = 32 << 20;

    /** Message types. */
    public static final int HELLO = 1, HELLO_ACK = 2, PAGES = 3, DISCARD = 4, STATE = 5, RESUMED = 6, REQUEST = 7,
            PUSH_DONE = 8, TRANSFERRED = 9, RESULT = 10, VERDICT = 11, ERROR = 12, READY = 13;

    /** Connection roles, in HELLO. */
    public static final int ROLE_MAIN = 0, ROLE_URGENT = 1;

    /** Why pages travel, in PAGES. */
    public static final int PURPOSE_PRECOPY = 0, PURPOSE_SWITCHOVER = 1, PURPOSE_PUSH = 2, PURPOSE_REPLY = 3;

    public static String typeName(int type) {
        return switch (type) {
            case HELLO -> "HELLO";
            case HELLO_ACK -> "HELLO_ACK";
            case PAGES -> "PAGES";
            case DISCARD -> "DISCARD";
            case STATE -> "STATE";
            case RESUMED -> "RESUMED";
            case REQUEST -> "REQUEST";
            case PUSH_DONE -> "PUSH_DONE";
            case TRANSFERRED -> "TRANSFERRED";
            case RESULT -> "RESULT";
            case VERDICT -> "VERDICT";
            case ERROR -> "ERROR";
            case READY -> "READY";
            default -> "type " + type;
        };
    }

    /** The type named {@code name} ("RESUMED"), or -1. */
    public static int typeOf(String name) {
        for (int t = HELLO; t <= READY; t++) if (typeName(t).equals(name)) return t;
        return -1;
    }

    public static String purposeName(int purpose) {
        return switch (purpose) {
            case PURPOSE_PRECOPY -> "pre-copy";
            case PURPOSE_SWITCHOVER -> "switch-over";
            case PURPOSE_PUSH -> "push";
            case PURPOSE_REPLY -> "reply";
            default -> "purpose " + purpose;
        };
    }
}
