"""Label conventions shared by every module.

Index 0 is background (ISPRS clutter, VOC background, pixels of unlisted values in custom
datasets); the dataset's own classes follow from 1 in their listed order. 255 marks pixels
that no loss and no metric ever sees (nodata, chip padding, uncertain pseudo-labels).
"""

BACKGROUND = 0
IGNORE_INDEX = 255
