//! TCP forwarder (issue 5): replaces `ncat --sh-exec "ncat NODEIP NODEPORT" -l 8888 --keep-open`.
