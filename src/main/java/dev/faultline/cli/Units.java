package dev.faultline.cli;

import java.util.Locale;
import picocli.CommandLine;

/** Parsing of sizes ("64M", "1G", "4096", "0x1000") and addresses ("0x200000", "2097152"). */
public final class Units {
    private Units() {}

    /** A size with an optional K/M/G/T suffix (powers of 1024; "KiB"/"MB" spellings accepted). */
    public static long parseSize(String text) {
        String s = text.trim().toUpperCase(Locale.ROOT);
        if (s.isEmpty()) throw new IllegalArgumentException("empty size");
        if (s.endsWith("IB")) s = s.substring(0, s.length() - 2);
        else if (s.endsWith("B") && s.length() > 1 && Character.isLetter(s.charAt(s.length() - 2))) s = s.substring(0, s.length() - 1);
        int shift = 0;
        char last = s.charAt(s.length() - 1);
        switch (last) {
            case 'K' -> shift = 10;
            case 'M' -> shift = 20;
            case 'G' -> shift = 30;
            case 'T' -> shift = 40;
            default -> { }
        }
        if (shift != 0) s = s.substring(0, s.length() - 1);
        long base = parseNumber(s, text);
        if (base < 0) throw new IllegalArgumentException("size '" + text + "' is negative");
        if (shift != 0 && Long.numberOfLeadingZeros(base) <= shift) {
            throw new IllegalArgumentException("size '" + text + "' is too large");
        }
        return base << shift;
    }

    /** An address or count: decimal, or hex with a 0x prefix. */
    public static long parseAddress(String text) {
        return parseNumber(text.trim(), text);
    }

    private static long parseNumber(String s, String original) {
        try {
            if (s.startsWith("0X")) return Long.parseUnsignedLong(s.substring(2), 16);
            if (s.startsWith("0x")) return Long.parseUnsignedLong(s.substring(2), 16);
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + original + "' is not a number (use decimal, 0x-hex, or a K/M/G suffix for sizes)");
        }
    }

    public static String formatSize(long bytes) {
        if (bytes >= (1L << 30) && bytes % (1L << 30) == 0) return (bytes >> 30) + " GiB";
        if (bytes >= (1L << 20) && bytes % (1L << 20) == 0) return (bytes >> 20) + " MiB";
        if (bytes >= (1L << 10) && bytes % (1L << 10) == 0) return (bytes >> 10) + " KiB";
        return bytes + " bytes";
    }

    /** picocli converter for sizes. */
    public static final class SizeConverter implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return parseSize(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    /** picocli converter for addresses. */
    public static final class AddressConverter implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return parseAddress(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }
}
