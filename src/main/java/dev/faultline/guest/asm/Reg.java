package dev.faultline.guest.asm;

/**
 * A general-purpose register of one size. Numbers follow the x86 encoding (RAX=0 ... R15=15), as in
 * {@link dev.faultline.hv.Regs}. The legacy high-byte registers (AH, CH, DH, BH) are not offered:
 * every 8-bit register here is the low byte, and SPL/BPL/SIL/DIL get the REX prefix they need.
 */
public final class Reg implements Operand {
    private static final String[] N64 = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"};
    private static final String[] N32 = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
    private static final String[] N16 = {"ax", "cx", "dx", "bx", "sp", "bp", "si", "di"};
    private static final String[] N8 = {"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"};

    private static final Reg[] QREGS = new Reg[16], DREGS = new Reg[16], WREGS = new Reg[16], BREGS = new Reg[16];

    static {
        for (int i = 0; i < 16; i++) {
            QREGS[i] = new Reg(i, 64, i < 8 ? N64[i] : "r" + i);
            DREGS[i] = new Reg(i, 32, i < 8 ? N32[i] : "r" + i + "d");
            WREGS[i] = new Reg(i, 16, i < 8 ? N16[i] : "r" + i + "w");
            BREGS[i] = new Reg(i, 8, i < 8 ? N8[i] : "r" + i + "b");
        }
    }

    public static final Reg RAX = QREGS[0], RCX = QREGS[1], RDX = QREGS[2], RBX = QREGS[3], RSP = QREGS[4], RBP = QREGS[5],
            RSI = QREGS[6], RDI = QREGS[7], R8 = QREGS[8], R9 = QREGS[9], R10 = QREGS[10], R11 = QREGS[11], R12 = QREGS[12],
            R13 = QREGS[13], R14 = QREGS[14], R15 = QREGS[15];
    public static final Reg EAX = DREGS[0], ECX = DREGS[1], EDX = DREGS[2], EBX = DREGS[3], ESP = DREGS[4], EBP = DREGS[5],
            ESI = DREGS[6], EDI = DREGS[7], R8D = DREGS[8], R9D = DREGS[9], R10D = DREGS[10], R11D = DREGS[11], R12D = DREGS[12],
            R13D = DREGS[13], R14D = DREGS[14], R15D = DREGS[15];
    public static final Reg AX = WREGS[0], CX = WREGS[1], DX = WREGS[2], BX = WREGS[3], SP = WREGS[4], BP = WREGS[5],
            SI = WREGS[6], DI = WREGS[7], R8W = WREGS[8], R9W = WREGS[9], R10W = WREGS[10], R11W = WREGS[11], R12W = WREGS[12],
            R13W = WREGS[13], R14W = WREGS[14], R15W = WREGS[15];
    public static final Reg AL = BREGS[0], CL = BREGS[1], DL = BREGS[2], BL = BREGS[3], SPL = BREGS[4], BPL = BREGS[5],
            SIL = BREGS[6], DIL = BREGS[7], R8B = BREGS[8], R9B = BREGS[9], R10B = BREGS[10], R11B = BREGS[11], R12B = BREGS[12],
            R13B = BREGS[13], R14B = BREGS[14], R15B = BREGS[15];

    private final int number;
    private final int bits;
    private final String name;

    private Reg(int number, int bits, String name) {
        this.number = number;
        this.bits = bits;
        this.name = name;
    }

    /** The register with encoding {@code number} (0-15) and size {@code bits} (8, 16, 32, 64). */
    public static Reg of(int number, int bits) {
        if (number < 0 || number > 15) throw new IllegalArgumentException("register number " + number + " outside 0..15");
        return switch (bits) {
            case 64 -> QREGS[number];
            case 32 -> DREGS[number];
            case 16 -> WREGS[number];
            case 8 -> BREGS[number];
            default -> throw new IllegalArgumentException("register size " + bits + " is not 8, 16, 32 or 64");
        };
    }

    /** This register at another size: {@code RAX.withBits(32) == EAX}. */
    public Reg withBits(int bits) { return of(number, bits); }

    public int number() { return number; }

    @Override public int bits() { return bits; }

    /** Low three bits, the part that goes into ModRM/SIB/opcode. */
    int low3() { return number & 7; }

    /** Bit 3, the part that goes into REX.R/X/B. */
    int high() { return number >> 3; }

    /** SPL, BPL, SIL, DIL: without a REX prefix their encodings mean AH, CH, DH, BH. */
    boolean byteRegNeedsRex() { return bits == 8 && number >= 4 && number < 8; }

    public String name() { return name; }

    @Override public String toString() { return name; }
}
