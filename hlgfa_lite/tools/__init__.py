"""The machinery that serves users around the method: the command line (``cli``), the whole-MVTec runner
(``mvtec``), the Space builder (``space``), checkpoint files (``checkpoint``), the feature cache training reads
(``cache``), the one atomic writer (``files``) and output-folder rules (``folders``), the figures (``visualize``)
and the detectors HLGFA is compared with (``baselines``)."""
