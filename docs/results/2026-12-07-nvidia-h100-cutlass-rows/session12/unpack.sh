# source'd by each part: unpack NAME -> /tmp/s12/NAME (once per warm machine), from .s12/bin/NAME.xz
unpack() {
    mkdir -p /tmp/s12
    [ -x /tmp/s12/$1 ] && return 0
    timeout 60 python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
        ".s12/bin/$1.xz" "/tmp/s12/$1.part" && chmod +x "/tmp/s12/$1.part" && mv "/tmp/s12/$1.part" "/tmp/s12/$1"
}
