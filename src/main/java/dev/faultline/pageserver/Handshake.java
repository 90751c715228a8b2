package dev.faultline.pageserver;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The one message of Firecracker's handshake: a JSON array of {@link GuestRegionMapping} objects, as
 * {@code serde_json::to_string} writes it (compact, fields in declaration order, decimal integers).
 * {@link #encode} writes it as a given {@link FirecrackerVersion} does; {@link #parse} reads any of
 * them and checks it before anything is believed:
 * <ul>
 *   <li>at most {@link #MAX_BYTES} bytes and {@link #MAX_REGIONS} regions, nesting and numbers bounded;</li>
 *   <li>each object has {@code base_host_virt_addr}, {@code size} and {@code offset}, optionally
 *       {@code page_size} and {@code page_size_kib} (equal when both are there), the secret-hiding
 *       branch's {@code gpa_start} and {@code is_guest_memfd} (false: served as main; true, a guest_memfd,
 *       is refused by name), and nothing else;</li>
 *   <li>page size 4096 (hugetlbfs regions are refused), sizes and offsets whole pages, host ranges in
 *       user space and not overlapping, file offsets consecutive from 0 (in whatever order the
 *       regions come).</li>
 * </ul>
 * Every refusal is a {@link HandshakeException} of one line that never echoes the message's text.
 */
public record Handshake(List<GuestRegionMapping> regions, FirecrackerVersion shape) {
    public static final int MAX_BYTES = 64 << 10, MAX_REGIONS = 64;
    public static final long PAGE = 4096;
    /** The end of x86-64 user space (47-bit addresses). */
    static final long USER_END = 1L << 47;

    /** A handshake that cannot be served: one line, naming the region or field. */
    public static final class HandshakeException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public HandshakeException(String message) { super(message); }
    }

    /** Regions in file-offset order. */
    public Handshake {
        regions = List.copyOf(regions);
    }

    /** Bytes of the memory file the regions cover: [0, total). */
    public long totalBytes() {
        long t = 0;
        for (GuestRegionMapping r : regions) t += r.size();
        return t;
    }

    /** The JSON {@code version} sends for these regions, in the given order (no trailing newline or NUL). */
    public static byte[] encode(List<GuestRegionMapping> regions, FirecrackerVersion version) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < regions.size(); i++) {
            GuestRegionMapping r = regions.get(i);
            if (i > 0) b.append(',');
            b.append("{\"base_host_virt_addr\":").append(Long.toUnsignedString(r.baseHostVirtAddr())).append(",\"size\":").append(r.size())
                    .append(",\"offset\":").append(r.offset());
            boolean secretHiding = version == FirecrackerVersion.SECRET_HIDING;
            if (secretHiding) b.append(",\"gpa_start\":").append(r.offset());   // where the region sits in guest-physical memory: any value serves here
            if (version.sendsPageSize()) b.append(",\"page_size\":").append(PAGE);
            if (secretHiding) b.append(",\"is_guest_memfd\":false");
            if (version.sendsPageSizeKib()) b.append(",\"page_size_kib\":").append(PAGE);  // bytes, despite the name
            b.append('}');
        }
        return b.append(']').toString().getBytes(StandardCharsets.US_ASCII);
    }

    private static final JsonFactory JSON = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(4).maxNumberLength(24).maxStringLength(4096)
                    .maxDocumentLength(MAX_BYTES).build())
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    /**
     * True when {@code bytes[0, len)} holds a whole top-level JSON array (its closing bracket seen,
     * outside strings), so a receiver knows the message is complete without a delimiter.
     */
    public static boolean complete(byte[] bytes, int len) {
        int depth = 0;
        boolean inString = false, escape = false, started = false;
        for (int i = 0; i < len; i++) {
            byte c = bytes[i];
            if (inString) {
                if (escape) escape = false;
                else if (c == '\\') escape = true;
                else if (c == '"') inString = false;
                continue;
            }
            switch (c) {
                case '"' -> inString = true;
                case '[', '{' -> { depth++; started = true; }
                case ']', '}' -> {
                    depth--;
                    if (started && depth == 0) return true;
                }
                default -> { }
            }
        }
        return false;
    }

    /**
     * Parses and checks one handshake message (see the class comment).
     * @throws HandshakeException naming what is wrong
     */
    public static Handshake parse(byte[] bytes) {
        if (bytes.length > MAX_BYTES) throw new HandshakeException("the handshake has " + bytes.length + " bytes, more than " + MAX_BYTES);
        List<GuestRegionMapping> regions = new ArrayList<>();
        Boolean withPageSize = null, withPageSizeKib = null;
        boolean secretHidingFields = false;
        try (JsonParser p = JSON.createParser(bytes)) {
            if (p.nextToken() != JsonToken.START_ARRAY) throw new HandshakeException("the handshake is not a JSON array of guest region mappings");
            while (p.nextToken() == JsonToken.START_OBJECT) {
                int index = regions.size();
                if (index == MAX_REGIONS) throw new HandshakeException("the handshake has more than " + MAX_REGIONS + " regions");
                long base = -1, size = -1, offset = -1, pageSize = -1, pageSizeKib = -1;
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String field = p.currentName();
                    JsonToken v = p.nextToken();
                    switch (field) {
                        case "base_host_virt_addr" -> base = u64(p, v, index, field);
                        case "size" -> size = u64(p, v, index, field);
                        case "offset" -> offset = u64(p, v, index, field);
                        case "page_size" -> pageSize = u64(p, v, index, field);
                        case "page_size_kib" -> pageSizeKib = u64(p, v, index, field);
                        case "gpa_start" -> {
                            u64(p, v, index, field);   // the region's guest-physical start: not needed to serve it
                            secretHidingFields = true;
                        }
                        case "is_guest_memfd" -> {
                            if (v == JsonToken.VALUE_TRUE) {
                                throw new HandshakeException("region " + index + " is a guest_memfd (is_guest_memfd: true): secret-hiding mappings "
                                        + "are not served by this handler (docs/pageserver.md)");
                            }
                            if (v != JsonToken.VALUE_FALSE) throw new HandshakeException("region " + index + " has an is_guest_memfd that is not a boolean");
                            secretHidingFields = true;
                        }
                        default -> throw new HandshakeException("region " + index + " has an unknown field " + printable(field)
                                + " (known: base_host_virt_addr, size, offset, page_size, page_size_kib)");
                    }
                }
                if (base < 0 || size < 0 || offset < 0) {
                    throw new HandshakeException("region " + index + " lacks " + (base < 0 ? "base_host_virt_addr" : size < 0 ? "size" : "offset"));
                }
                boolean hasPs = pageSize >= 0, hasKib = pageSizeKib >= 0;
                if (withPageSize == null) {
                    withPageSize = hasPs;
                    withPageSizeKib = hasKib;
                } else if (withPageSize != hasPs || withPageSizeKib != hasKib) {
                    throw new HandshakeException("region " + index + " has other page-size fields than region 0");
                }
                if (hasPs && hasKib && pageSize != pageSizeKib) {
                    throw new HandshakeException("region " + index + " has page_size " + pageSize + " but page_size_kib " + pageSizeKib
                            + " (both hold bytes)");
                }
                long ps = hasPs ? pageSize : hasKib ? pageSizeKib : 0;
                regions.add(new GuestRegionMapping(base, size, offset, ps));
            }
            if (p.currentToken() != JsonToken.END_ARRAY) throw new HandshakeException("the handshake's array holds something other than region objects");
            if (p.nextToken() != null) throw new HandshakeException("the handshake has bytes after its JSON array");
        } catch (JsonProcessingException e) {
            throw new HandshakeException("the handshake is not valid JSON (" + e.getOriginalMessage().lines().findFirst().orElse("") + ")");
        } catch (IOException e) {
            throw new HandshakeException("the handshake cannot be read: " + e.getMessage());
        }
        if (regions.isEmpty()) throw new HandshakeException("the handshake names no region");
        FirecrackerVersion shape = secretHidingFields ? FirecrackerVersion.SECRET_HIDING
                : FirecrackerVersion.ofFields(Boolean.TRUE.equals(withPageSize), Boolean.TRUE.equals(withPageSizeKib));
        return new Handshake(check(regions), shape);
    }

    private static long u64(JsonParser p, JsonToken v, int index, String field) throws IOException {
        if (v != JsonToken.VALUE_NUMBER_INT) throw new HandshakeException("region " + index + " has a " + field + " that is not an integer");
        BigInteger b = p.getBigIntegerValue();
        if (b.signum() < 0 || b.bitLength() > 63) throw new HandshakeException("region " + index + " has " + field + " out of range");
        return b.longValueExact();
    }

    /** A field name for a message: only if short and plain, else a description (never raw input). */
    private static String printable(String s) {
        return s.length() <= 32 && s.chars().allMatch(c -> c == '_' || Character.isLetterOrDigit(c) && c < 128) ? "'" + s + "'"
                : "(a name of " + s.length() + " characters)";
    }

    /** The checks of the class comment; returns the regions in file-offset order. */
    static List<GuestRegionMapping> check(List<GuestRegionMapping> regions) {
        for (int i = 0; i < regions.size(); i++) {
            GuestRegionMapping r = regions.get(i);
            if (r.pageSize() != 0 && r.pageSize() != PAGE) {
                throw new HandshakeException("region " + i + " has page size " + r.pageSize() + " bytes; this handler serves 4096-byte pages only "
                        + "(hugetlbfs-backed guest memory is not supported)");
            }
            if (r.size() == 0) throw new HandshakeException("region " + i + " is empty");
            if (((r.baseHostVirtAddr() | r.size() | r.offset()) & (PAGE - 1)) != 0) {
                throw new HandshakeException("region " + i + " " + r + " is not whole 4 KiB pages");
            }
            if (r.baseHostVirtAddr() == 0 || r.baseHostVirtAddr() >= USER_END || r.size() > USER_END - r.baseHostVirtAddr()) {
                throw new HandshakeException("region " + i + " " + r + " is not inside user space");
            }
        }
        List<GuestRegionMapping> byHost = new ArrayList<>(regions);
        byHost.sort(Comparator.comparingLong(GuestRegionMapping::baseHostVirtAddr));
        for (int i = 1; i < byHost.size(); i++) {
            if (byHost.get(i).baseHostVirtAddr() < byHost.get(i - 1).endHostVirtAddr()) {
                throw new HandshakeException("regions " + byHost.get(i - 1) + " and " + byHost.get(i) + " overlap in the VMM's memory");
            }
        }
        List<GuestRegionMapping> byOffset = new ArrayList<>(regions);
        byOffset.sort(Comparator.comparingLong(GuestRegionMapping::offset));
        long next = 0;
        for (GuestRegionMapping r : byOffset) {
            if (r.offset() != next) {
                throw new HandshakeException("region " + r + " starts at file offset 0x" + Long.toHexString(r.offset()) + "; offsets must be consecutive from 0 "
                        + "(expected 0x" + Long.toHexString(next) + ")");
            }
            next += r.size();
            if (next < 0) throw new HandshakeException("the regions' sizes overflow");
        }
        return byOffset;
    }
}
