package dev.faultline.guest.asm;

/** x86 condition codes in encoding order (the low nibble of Jcc/SETcc/CMOVcc). */
public enum Cond {
    O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G;

    /** The 4-bit encoding. */
    public int code() { return ordinal(); }

    /** The opposite condition (E becomes NE). */
    public Cond negate() { return values()[ordinal() ^ 1]; }

    /** Lower-case suffix as GNU as spells it (jae, setne, cmovl). */
    public String suffix() { return name().toLowerCase(java.util.Locale.ROOT); }
}
