"""The paper's four tasks: their description (:mod:`task`), their data (:mod:`data`), the reasoning traces and
contrastive sets built from them (:mod:`traces`, :mod:`contrastive`, :mod:`embeddings`), and how answers are
read and judged (:mod:`scoring`, :mod:`quality`)."""
