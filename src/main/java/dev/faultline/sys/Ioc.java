package dev.faultline.sys;

/**
 * The Linux {@code _IOC} ioctl-number encoding (include/uapi/asm-generic/ioctl.h, used by x86-64):
 *
 * <pre>
 *   31 30 29                    16 15           8 7            0
 *  +-----+------------------------+--------------+--------------+
 *  | dir |  size of the argument  |  type (0xAE) |  nr          |
 *  +-----+------------------------+--------------+--------------+
 *  dir: 0 none, 1 write (user to kernel), 2 read (kernel to user), 3 both
 * </pre>
 *
 * Numbers are returned as non-negative {@code long}s (the C {@code unsigned long} request).
 */
public final class Ioc {
    private Ioc() {}

    public static final int DIR_NONE = 0, DIR_WRITE = 1, DIR_READ = 2;
    static final int NR_SHIFT = 0, TYPE_SHIFT = 8, SIZE_SHIFT = 16, DIR_SHIFT = 30;
    static final int SIZE_BITS = 14;

    public static long ioc(int dir, int type, int nr, long size) {
        if (size < 0 || size >= (1L << SIZE_BITS)) throw new IllegalArgumentException("ioctl argument size " + size + " does not fit 14 bits");
        return ((long) dir << DIR_SHIFT) | (size << SIZE_SHIFT) | ((long) (type & 0xff) << TYPE_SHIFT) | ((long) (nr & 0xff) << NR_SHIFT);
    }

    /** {@code _IO(type, nr)}. */
    public static long io(int type, int nr) { return ioc(DIR_NONE, type, nr, 0); }
    /** {@code _IOR(type, nr, size)}: the kernel writes the argument. */
    public static long ior(int type, int nr, long size) { return ioc(DIR_READ, type, nr, size); }
    /** {@code _IOW(type, nr, size)}: the kernel reads the argument. */
    public static long iow(int type, int nr, long size) { return ioc(DIR_WRITE, type, nr, size); }
    /** {@code _IOWR(type, nr, size)}. */
    public static long iowr(int type, int nr, long size) { return ioc(DIR_READ | DIR_WRITE, type, nr, size); }
}
