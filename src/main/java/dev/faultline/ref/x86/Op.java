package dev.faultline.ref.x86;

/** The operations a decoded {@link Insn} can carry (dense ints, so the interpreter's switch is a table). */
public final class Op {
    private Op() {}

    // ALU: sub = ADD 0, OR 1, ADC 2, SBB 3, AND 4, SUB 5, XOR 6, CMP 7 (the opcode's bits 5:3)
    public static final int ALU_RR = 1;      // reg(rm) op= reg(reg)   (dst rm register, src reg)
    public static final int ALU_RI = 2;      // reg(rm) op= imm
    public static final int ALU_MR = 3;      // [m] op= reg
    public static final int ALU_RM = 4;      // reg op= [m]
    public static final int ALU_MI = 5;      // [m] op= imm
    public static final int MOV_RR = 6;      // rm <- reg (registers)
    public static final int MOV_RI = 7;      // rm <- imm
    public static final int LOAD = 8;        // reg <- [m]
    public static final int STORE = 9;       // [m] <- reg
    public static final int STORE_I = 10;    // [m] <- imm
    public static final int MOVZX = 11;      // reg(size) <- zero-extended rm(size2)
    public static final int MOVSX = 12;      // reg(size) <- sign-extended rm(size2)
    public static final int LEA = 13;
    public static final int PUSH_R = 14, POP_R = 15, PUSH_I = 16, PUSH_M = 17, POP_M = 18;
    public static final int JCC = 19, JMP = 20, CALL = 21, RET = 22, JMP_IND = 23, CALL_IND = 24;
    public static final int SETCC = 25, CMOVCC = 26;
    public static final int TEST_R = 27, TEST_I = 28;          // rm & reg, rm & imm
    public static final int INC_DEC = 29;                       // sub 0 inc, 1 dec
    public static final int NOT = 30, NEG = 31;
    public static final int SHIFT = 32;                         // sub = ROL ROR RCL RCR SHL SHR SAL SAR; size2 1 = count in CL
    public static final int MUL1 = 33;                          // sub 0 mul, 1 imul
    public static final int DIV = 34;                           // sub 0 div, 1 idiv
    public static final int IMUL2 = 35, IMUL3 = 36;
    public static final int CONV_A = 37, CONV_D = 38;           // cbw/cwde/cdqe, cwd/cdq/cqo
    public static final int XCHG = 39, CMPXCHG = 40, XADD = 41;
    public static final int BSF = 42, BSR = 43, TZCNT = 44, LZCNT = 45, POPCNT = 46, BSWAP = 47;
    public static final int BT = 48;                            // sub 0 bt, 1 bts, 2 btr, 3 btc; size2 1 = imm offset
    public static final int STRING = 49;                        // sub = MOVS 0, STOS 1, LODS 2, CMPS 3, SCAS 4
    public static final int NOP = 50, HLT = 51, IN = 52, OUT = 53, CPUID = 54, RDTSC = 55, RDMSR = 56, WRMSR = 57;
    public static final int MOV_FROM_CR = 58, MOV_TO_CR = 59, INVLPG = 60, LGDT = 61, LIDT = 62;
    public static final int FLAGOP = 63;                        // sub: CLC STC CMC CLD STD CLI STI
    public static final int PUSHF = 64, POPF = 65, LAHF = 66, SAHF = 67, LEAVE = 68;
    public static final int LOOP = 69;                          // sub 0 loopne, 1 loope, 2 loop, 3 jrcxz
    public static final int SHLD = 70, SHRD = 71;               // size2 1 = count in CL
    public static final int SGDT = 72, SIDT = 73;
    public static final int XCHG_RR = 74;
    /** A valid instruction that raises an exception unconditionally (ud2, int3, int n...): imm = vector. */
    public static final int EXCEPTION = 75;
    /** Not in the supported subset: an emulation-failure exit with the bytes. */
    public static final int UNSUPPORTED = 76;
    public static final int CMP_RR_FAST = 77;                   // (reserved)
    /** vmcall (0f 01 c1) or vmmcall (0f 01 d9): a hypercall to the hypervisor. */
    public static final int VMCALL = 78;
    public static final int COUNT = 79;

    public static final int SUB_ADD = 0, SUB_OR = 1, SUB_ADC = 2, SUB_SBB = 3, SUB_AND = 4, SUB_SUB = 5, SUB_XOR = 6,
            SUB_CMP = 7;
    public static final int SH_ROL = 0, SH_ROR = 1, SH_RCL = 2, SH_RCR = 3, SH_SHL = 4, SH_SHR = 5, SH_SAL = 6, SH_SAR = 7;
    public static final int STR_MOVS = 0, STR_STOS = 1, STR_LODS = 2, STR_CMPS = 3, STR_SCAS = 4;
    public static final int FL_CLC = 0, FL_STC = 1, FL_CMC = 2, FL_CLD = 3, FL_STD = 4, FL_CLI = 5, FL_STI = 6;

    /** Exception vectors. */
    public static final int DE = 0, DB = 1, BP = 3, OF_ = 4, UD = 6, DF = 8, GP = 13, PF = 14;
}
